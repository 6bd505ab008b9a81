#!/bin/bash
# bhvm-timeout: 240
# Speed, reported not asserted: /dev/ublkb0 (mem backend) against a loop
# device over a tmpfs file in the same VM, fio io_uring direct=1.
# Metrics "ublk.TEST.UNIT" / "loop.TEST.UNIT"; the host prints the ratio.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

secs=${BHVM_SPEED_SECS:-6}
ublk_start 0 -q 2 --size 256M --backend mem
truncate -s 256M /tmp/loop.img
loopdev=$(losetup --direct-io=off -f --show /tmp/loop.img) || fail "losetup failed"

# each test runs on both devices back to back, so that load from outside
# the VM shifts both figures alike
speed_test() { # TEST UNIT FIELD FIO_ARGS...
	local test=$1 unit=$2 field=$3 dev f v
	shift 3
	for dev in ublk loop; do
		if [ $dev = ublk ]; then f=/dev/ublkb0; else f=$loopdev; fi
		fio_terse --name="$test" --filename="$f" --ioengine=io_uring --direct=1 --size=256M "$@"
		v=$(fio_field "$field")
		[ "$unit" = MiBps ] && v=$((v / 1024))
		metric "$dev.$test.$unit" "$v"
	done
}
# Fill both devices first, untimed: reads then see real data, and the timed
# writes measure the device, not the first touch of fresh memory (Go's
# allocator for the memory backend, tmpfs for the loop device), which under
# TCG costs more than the I/O path itself.
for f in /dev/ublkb0 "$loopdev"; do
	run fio --name=fill --filename="$f" --ioengine=io_uring --direct=1 --size=256M --rw=write --bs=1M --iodepth=8 --output=/dev/null
done
speed_test seqwrite1m MiBps 48 --rw=write --bs=1M --iodepth=8
speed_test seqread1m MiBps 7 --rw=read --bs=1M --iodepth=8 --time_based --runtime="$secs"
speed_test randread4k iops 8 --rw=randread --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
speed_test randwrite4k iops 49 --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
losetup -d "$loopdev"
ublk_stop 0
pass
