#!/bin/bash
# bhvm-timeout: 240
# Speed, reported not asserted: the memory backend served two ways against a
# loop device over a tmpfs file in the same VM, fio io_uring direct=1:
#   ublk  /dev/ublkb0 with UBLK_F_USER_COPY: the backend moves each request's
#         data with one pread/pwrite on /dev/ublkc0 (one copy, like loop's);
#   copy  /dev/ublkb1 with per-tag buffers: the kernel copies into them and
#         the backend copies again.
# Metrics "ublk|copy|loop.TEST.UNIT"; the host prints the ratios to loop.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

secs=${BHVM_SPEED_SECS:-3} # per round (speed_compare: 2 rounds)
ublk_start 0 -q 2 --size 256M --backend mem --user-copy
ublk_start 1 -q 2 --size 256M --backend mem
truncate -s 256M /tmp/loop.img
loopdev=$(losetup --direct-io=off -f --show /tmp/loop.img) || fail "losetup failed"

# Fill both devices first, untimed: reads then see real data, and the timed
# writes measure the device, not the first touch of fresh memory (Go's
# allocator for the memory backend, tmpfs for the loop device), which under
# TCG costs more than the I/O path itself.
for f in /dev/ublkb0 /dev/ublkb1 "$loopdev"; do
	run fio --name=fill --filename="$f" --ioengine=io_uring --direct=1 --size=256M --rw=write --bs=1M --iodepth=8 --output=/dev/null
done
devs="ublk=/dev/ublkb0 copy=/dev/ublkb1 loop=$loopdev"
fio_args=(--ioengine=io_uring --direct=1 --size=256M)
speed_compare seqwrite1m MiBps 48 "$devs" "${fio_args[@]}" --rw=write --bs=1M --iodepth=8
speed_compare seqread1m MiBps 7 "$devs" "${fio_args[@]}" --rw=read --bs=1M --iodepth=8 --time_based --runtime="$secs"
speed_compare randread4k iops 8 "$devs" "${fio_args[@]}" --rw=randread --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
speed_compare randwrite4k iops 49 "$devs" "${fio_args[@]}" --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
losetup -d "$loopdev"
ublk_stop 0
ublk_stop 1
pass
