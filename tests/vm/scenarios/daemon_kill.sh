#!/bin/bash
# bhvm-timeout: 300
# SIGKILL the daemon in the middle of fio; start it again: the device is
# recovered in place (/dev/ublkb0 never goes away), the fio job finishes,
# every write flushed before the kill reads back, and fsck finds nothing.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
dev=$(bh add v --size 256M -q 2) || fail "add"
wait_for_dev "$dev"
# Region A: written with a verify pattern and flushed (fsync at the end).
a="--name=a --filename=$dev --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k
 --iodepth=32 --offset=0 --size=32M --verify=crc32c --verify_fatal=1"
# shellcheck disable=SC2086
run fio $a --do_verify=0 --end_fsync=1
# Region B: written while the daemon is killed.
# shellcheck disable=SC2086
fio --name=b --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
	--iodepth=32 --offset=128M --size=64M --rate_iops=1500 >"$BHVM_WORK/fio-b.log" 2>&1 &
fio_pid=$!
sleep 3
kill -0 $fio_pid 2>/dev/null || fail "fio ended before the kill: $(tail -n 20 "$BHVM_WORK/fio-b.log")"
bh_kill
sleep 0.5
[ -b "$dev" ] || fail "$dev vanished when the daemon was killed"
bh_serve
grep -q "recovered device" "$BHVM_WORK/serve.log" || fail "the daemon did not recover the device: $(tail -n 10 "$BHVM_WORK/serve.log")"
wait_for 120 _dead $fio_pid || fail "fio still running 120 s after the recovery"
wait $fio_pid || fail "fio on region B failed across the kill: $(tail -n 20 "$BHVM_WORK/fio-b.log")"
# shellcheck disable=SC2086
run fio $a --verify_only
bh_down
out=$(bh fsck) || fail "fsck after the crash: $out"
log "$out"
pass
