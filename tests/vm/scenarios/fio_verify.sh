#!/bin/bash
# bhvm-timeout: 180
# fio 4 KiB random writes at QD32 with crc32c verify on a 2-queue device
# (one job pinned to each CPU, so both hardware queues carry I/O), then a
# separate verify-only read pass over everything written. Twice: with the
# per-tag buffers the kernel copies into, then with UBLK_F_USER_COPY (the
# memory backend moves the data itself with pread/pwrite on /dev/ublkc0).
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

# shellcheck disable=SC2086 # $mode is empty or one flag
for mode in "" --user-copy; do
	log "=== mode: ${mode:-copy}"
	st=$BHVM_WORK/stats$mode
	ublk_start 0 -q 2 -d 128 --size 256M --backend mem --stats "$st" $mode
	nq=$(find /sys/block/ublkb0/mq -mindepth 1 -maxdepth 1 | wc -l)
	[ "$nq" -eq 2 ] || fail "/sys/block/ublkb0/mq has $nq hardware queues, want 2"

	job="--filename=/dev/ublkb0 --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k
	 --iodepth=32 --numjobs=2 --size=64M --offset_increment=64M --cpus_allowed=0-1
	 --cpus_allowed_policy=split --verify=crc32c --verify_fatal=1 --group_reporting"
	# shellcheck disable=SC2086 # $job is a word list
	run fio --name=vwrite $job
	# shellcheck disable=SC2086
	run fio --name=vwrite $job --verify_only

	stats_settle
	w=$(stat_get "$st" writes) r=$(stat_get "$st" reads)
	log "server counted reads=$r writes=$w"
	[ "$w" -ge 16384 ] || fail "${mode:-copy}: server counted $w writes, want >= 16384 (2 x 64 MiB / 4 KiB = 32768 before merging)"
	[ "$r" -ge 32768 ] || fail "${mode:-copy}: server counted $r reads, want >= 32768 (two verify passes read 65536 blocks)"
	ublk_stop 0
	wait_gone /dev/ublkb0
done
pass
