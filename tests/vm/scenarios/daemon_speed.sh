#!/bin/bash
# bhvm-timeout: 300
# Speed, reported not asserted: fio on a store-backed device (the daemon),
# a memory-backed ublk device (ublktest) and a loop device over a tmpfs file,
# side by side in one VM run. Metrics "store|mem|loop.TEST.UNIT". The
# daemon runs with a CPU profile, which the host summarises with pprof.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

secs=${BHVM_SPEED_SECS:-6}
bh_init
# a CPU profile of the daemon, summarised on the host (where the time goes)
BH_SERVE_ARGS="--cpuprofile $BHVM_WORK/serve.prof"
bh_serve
store=$(bh add speed --size 256M -q 2) || fail "add"
wait_for_dev "$store"
ublk_start 5 -q 2 --size 256M --backend mem
truncate -s 256M /tmp/loop.img
loopdev=$(losetup --direct-io=off -f --show /tmp/loop.img) || fail "losetup failed"

speed_test() { # TEST UNIT FIELD FIO_ARGS...
	local test=$1 unit=$2 field=$3 dev f v
	shift 3
	for dev in store mem loop; do
		case $dev in store) f=$store ;; mem) f=/dev/ublkb5 ;; loop) f=$loopdev ;; esac
		fio_terse --name="$test" --filename="$f" --ioengine=io_uring --direct=1 --size=256M "$@"
		v=$(fio_field "$field")
		[ "$unit" = MiBps ] && v=$((v / 1024))
		metric "$dev.$test.$unit" "$v"
	done
}
# Fill the three devices first, untimed (see speed.sh: the first touch of
# fresh memory is not what is measured); the timed writes then overwrite.
for f in "$store" /dev/ublkb5 "$loopdev"; do
	run fio --name=fill --filename="$f" --ioengine=io_uring --direct=1 --size=256M --rw=write --bs=1M --iodepth=8 --output=/dev/null
done
# Unique data (fio's random buffers), so the store stores every block.
speed_test seqwrite1m MiBps 48 --rw=write --bs=1M --iodepth=8 --refill_buffers
speed_test seqread1m MiBps 7 --rw=read --bs=1M --iodepth=8 --time_based --runtime="$secs"
speed_test randread4k iops 8 --rw=randread --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
speed_test randwrite4k iops 49 --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs" --refill_buffers
losetup -d "$loopdev"
ublk_stop 5
bh_stop
export_file daemon_speed.serve.prof "$BHVM_WORK/serve.prof"
pass
