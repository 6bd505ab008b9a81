#!/bin/bash
# bhvm-timeout: 300
# Speed, reported not asserted: fio on a store-backed device (the daemon),
# a memory-backed ublk device (ublktest, with UBLK_F_USER_COPY) and a loop
# device over a tmpfs file, side by side in one VM run. Metrics "store|mem|loop.TEST.UNIT". The
# daemon runs with a CPU profile, which the host summarises with pprof.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

secs=${BHVM_SPEED_SECS:-3} # per round (speed_compare: 2 rounds)
bh_init
# a CPU profile of the daemon, summarised on the host (where the time goes)
BH_SERVE_ARGS="--cpuprofile $BHVM_WORK/serve.prof"
bh_serve
store=$(bh add speed --size 256M -q 2) || fail "add"
wait_for_dev "$store"
ublk_start 5 -q 2 --size 256M --backend mem --user-copy
truncate -s 256M /tmp/loop.img
loopdev=$(losetup --direct-io=off -f --show /tmp/loop.img) || fail "losetup failed"

# Fill the three devices first, untimed (see speed.sh: the first touch of
# fresh memory is not what is measured); the timed writes then overwrite.
for f in "$store" /dev/ublkb5 "$loopdev"; do
	run fio --name=fill --filename="$f" --ioengine=io_uring --direct=1 --size=256M --rw=write --bs=1M --iodepth=8 --output=/dev/null
done
# Unique data (fio's random buffers), so the store stores every block.
devs="store=$store mem=/dev/ublkb5 loop=$loopdev"
fio_args=(--ioengine=io_uring --direct=1 --size=256M)
speed_compare seqwrite1m MiBps 48 "$devs" "${fio_args[@]}" --rw=write --bs=1M --iodepth=8 --refill_buffers
speed_compare seqread1m MiBps 7 "$devs" "${fio_args[@]}" --rw=read --bs=1M --iodepth=8 --time_based --runtime="$secs"
speed_compare randread4k iops 8 "$devs" "${fio_args[@]}" --rw=randread --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
speed_compare randwrite4k iops 49 "$devs" "${fio_args[@]}" --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs" --refill_buffers
losetup -d "$loopdev"
ublk_stop 5
bh_down
export_file daemon_speed.serve.prof "$BHVM_WORK/serve.prof"
pass
