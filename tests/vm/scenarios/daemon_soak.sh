#!/bin/bash
# bhvm-timeout: 300
# Four store-backed devices under concurrent fio (random read/write with
# verification) for BHVM_SOAK_SECS (default 150): no errors, fsck clean
# after, and the daemon's memory stays bounded: its resident size levels
# off (the second half of the run adds less than half what the first half
# added, plus 16 MiB) and stays under 600 MB.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

secs=${BHVM_SOAK_SECS:-150}
bh_init
bh_serve
pids=""
for i in 0 1 2 3; do
	d=$(bh add "s$i" --size 128M -q 2) || fail "add s$i"
	wait_for_dev "$d"
done
rss0=$(bh_rss)
for i in 0 1 2 3; do
	fio --name="s$i" --filename="/dev/ublkb$i" --ioengine=io_uring --direct=1 --rw=randrw --bs=4k \
		--iodepth=16 --size=64M --time_based --runtime="$secs" --verify=crc32c --verify_fatal=1 \
		--verify_backlog=1024 >"$BHVM_WORK/fio$i.log" 2>&1 &
	pids="$pids $!"
done
start=$(date +%s)
max1=0 max2=0 # the highest RSS in the first and the second half
while :; do
	alive=0
	for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
	[ $alive = 1 ] || break
	r=$(bh_rss)
	if [ $(($(date +%s) - start)) -lt $((secs / 2)) ]; then
		[ "${r:-0}" -gt "$max1" ] && max1=$r
	else
		[ "${r:-0}" -gt "$max2" ] && max2=$r
	fi
	sleep 5
done
max=$((max1 > max2 ? max1 : max2))
for i in 0 1 2 3; do
	p=$(echo $pids | cut -d' ' -f$((i + 1)))
	wait "$p" || fail "fio on /dev/ublkb$i failed: $(tail -n 20 "$BHVM_WORK/fio$i.log")"
done
metric rss_start_kib "$rss0"
metric rss_first_half_max_kib "$max1"
metric rss_second_half_max_kib "$max2"
log "daemon RSS: ${rss0} KiB at start, at most ${max1} KiB in the first half, ${max2} KiB in the second"
[ "$max" -lt 600000 ] || fail "daemon RSS reached ${max} KiB"
[ $((max2 - max1)) -lt $(((max1 - rss0) / 2 + 16384)) ] ||
	fail "daemon RSS still growing: ${rss0} -> ${max1} -> ${max2} KiB"
bh_down
out=$(bh fsck) || fail "fsck: $out"
pass
