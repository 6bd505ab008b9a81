#!/bin/bash
# bhvm-timeout: 240
# fio with verify runs across plain daemon restarts (SIGTERM, serve again)
# and completes without an error: the device stays while no daemon runs,
# its I/O waits in the kernel, the next daemon takes it over by user
# recovery, and every write completed before the stop reads back (a stop
# drains and flushes). Job A restarts the daemon during its write phase
# and verifies in the same run; job B restarts it during a verifying
# read. A stop that removed the device, or lost a completed write, fails
# fio (I/O error, or a verify mismatch).
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

# restart_during PID SECS: SIGTERM the daemon SECS into fio PID's run and
# start it again; fio must still be running at the stop
restart_during() {
	sleep "$2"
	kill -0 "$1" 2>/dev/null || fail "fio ended before the restart: $(tail -n 20 "$BHVM_WORK/fio.log")"
	bh_stop
	[ -b "$dev" ] || fail "$dev went away on SIGTERM"
	sleep 1
	bh_serve
	grep -q "recovered device" "$BHVM_WORK/serve.log" || fail "the daemon did not recover the device: $(tail -n 10 "$BHVM_WORK/serve.log")"
}

bh_init
bh_serve
dev=$(bh add v --size 128M -q 2) || fail "add"
wait_for_dev "$dev"
common="--filename=$dev --ioengine=io_uring --direct=1 --bs=4k --iodepth=16
 --verify=crc32c --verify_fatal=1 --refill_buffers"

log "job A: write phase spans a restart, then verifies in the same run"
# shellcheck disable=SC2086
fio $common --name=a --rw=randwrite --offset=0 --size=16M --rate_iops=500 >"$BHVM_WORK/fio.log" 2>&1 &
fio_pid=$!
restart_during $fio_pid 3
wait_for 180 _dead $fio_pid || fail "fio A still running 180 s after the restart"
wait $fio_pid || fail "fio A failed across the restart: $(tail -n 30 "$BHVM_WORK/fio.log")"
grep -E "err=|WRITE:|READ:" "$BHVM_WORK/fio.log" | while read -r l; do log "fio A: $l"; done
read_kib=$(awk -F'[=,]' '/READ: bw=/ {print; exit}' "$BHVM_WORK/fio.log")
[ -n "$read_kib" ] || fail "fio A did not read anything back (no verify phase): $(tail -n 30 "$BHVM_WORK/fio.log")"

log "job B: a verifying read (rate-limited, unlike --verify_only) spans a restart"
# shellcheck disable=SC2086
run fio $common --name=b --rw=randwrite --offset=32M --size=16M --do_verify=0
# shellcheck disable=SC2086
fio $common --name=b --rw=randread --offset=32M --size=16M --rate_iops=500 >"$BHVM_WORK/fio.log" 2>&1 &
fio_pid=$!
restart_during $fio_pid 3
wait_for 180 _dead $fio_pid || fail "fio B still running 180 s after the restart"
wait $fio_pid || fail "fio B failed across the restart: $(tail -n 30 "$BHVM_WORK/fio.log")"
# job A's data once more, after two restarts
# shellcheck disable=SC2086
run fio $common --name=a --rw=randwrite --offset=0 --size=16M --verify_only
bh_down
wait_gone "$dev"
out=$(bh fsck) || fail "fsck: $out"
log "$out"
pass
