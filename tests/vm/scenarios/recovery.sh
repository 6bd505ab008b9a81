#!/bin/bash
# bhvm-timeout: 180
# SIGKILL the server in the middle of a fio write job (file backend on tmpfs,
# so the data survives); `ublktest recover` takes the device over; the fio job
# finishes and a verify-only pass over everything it wrote succeeds. Twice:
# with per-tag buffers, then with UBLK_F_USER_COPY, which the recovering
# server must pick up from the device (it passes no --user-copy itself).
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

# shellcheck disable=SC2086 # $mode is empty or one flag
for mode in "" --user-copy; do
	log "=== mode: ${mode:-copy}"
	img=/tmp/recover.img
	rm -f "$img"
	truncate -s 256M "$img"
	ublk_start 0 -q 2 --size 256M --backend "file=$img" $mode
	job="--name=rec --filename=/dev/ublkb0 --ioengine=io_uring --direct=1 --rw=randwrite
	 --bs=4k --iodepth=32 --size=64M --verify=crc32c --verify_fatal=1"
	# ~8 s of writes at 2000 IOPS; the server dies after 3 s
	# shellcheck disable=SC2086
	fio $job --do_verify=0 --rate_iops=2000 >"$BHVM_WORK/fio.log" 2>&1 &
	fio_pid=$!
	sleep 3
	kill -0 $fio_pid 2>/dev/null || fail "fio ended before the kill: $(tail -n 20 "$BHVM_WORK/fio.log")"
	ublk_kill 0
	sleep 0.5
	[ -b /dev/ublkb0 ] || fail "/dev/ublkb0 vanished after the server was killed (no user recovery?)"
	log "state after kill: $(cat /sys/block/ublkb0/size 2>/dev/null) sectors; recovering"
	ublk_recover 0 --backend "file=$img"

	wait_for 60 _dead $fio_pid || fail "fio still running 60 s after the recovery"
	wait $fio_pid
	rc=$?
	cat "$BHVM_WORK/fio.log"
	[ $rc -eq 0 ] || fail "fio write job failed across the kill/recover (exit $rc)"
	# shellcheck disable=SC2086
	run fio $job --verify_only
	ublk_stop 0
	wait_gone /dev/ublkb0
	wait_gone /sys/block/ublkb0
done
pass
