#!/bin/bash
# bhvm-timeout: 120
# Two devices (-n 0 and -n 1) side by side keep their data apart; a clean
# shutdown (SIGTERM) of one removes /dev/ublkbN and /sys/block/ublkbN and
# leaves the other working; `ublktest del` removes a device whose server
# was SIGKILLed.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

ublk_start 0 --size 64M --backend mem
ublk_start 1 --size 64M --backend mem
head -c 8388608 /dev/urandom >"$BHVM_WORK/a"
head -c 8388608 /dev/urandom >"$BHVM_WORK/b"
run dd if="$BHVM_WORK/a" of=/dev/ublkb0 bs=1M oflag=direct status=none
run dd if="$BHVM_WORK/b" of=/dev/ublkb1 bs=1M oflag=direct status=none
run cmp -n 8388608 /dev/ublkb0 "$BHVM_WORK/a"
run cmp -n 8388608 /dev/ublkb1 "$BHVM_WORK/b"

ublk_stop 0
wait_gone /dev/ublkb0
wait_gone /sys/block/ublkb0
wait_gone /dev/ublkc0
run cmp -n 8388608 /dev/ublkb1 "$BHVM_WORK/b"
run fio --name=after --filename=/dev/ublkb1 --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --iodepth=16 --size=16M --verify=crc32c --verify_fatal=1
ublk_stop 1
wait_gone /dev/ublkb1
wait_gone /sys/block/ublkb1
[ ! -e /sys/class/ublk-char/ublkc1 ] || fail "ublkc1 still registered"

log "ublktest del after a crash"
ublk_start 2 --size 16M --backend mem
ublk_kill 2
run timeout 30 ublktest del -n 2
wait_gone /dev/ublkb2
wait_gone /dev/ublkc2
pass
