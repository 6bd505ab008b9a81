#!/bin/bash
# bhvm-timeout: 300
# Prometheus metrics (serve --metrics-addr) scraped with busybox nc while
# fio writes exactly 2000 random 4 KiB blocks (8000 KiB, each block once)
# to a served device, merges off: the device's write counter, written
# bytes and write latency histogram move by at least what fio issued (the
# count fio reports), the counters never go back between scrapes, the
# flush at fio's end is a commit, the store's gauges are there; a device
# no longer served has no metrics; the endpoint stops with the daemon.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

require nc awk
# The guest's loopback is down until someone brings it up.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up || fail "cannot bring lo up"

addr=127.0.0.1:9477
# scrape: GET /metrics with busybox nc (busybox's static wget segfaults
# in this guest), the body on stdout; fails unless the answer is 200
scrape() {
	printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" | nc 127.0.0.1 9477 >scrape.raw 2>scrape.err ||
		{ log "nc failed: $(cat scrape.err)" >&2; return 1; }
	head -n 1 scrape.raw | grep -q '^HTTP/1\.[01] 200 ' ||
		{ log "bad answer: $(head -c 300 scrape.raw) $(cat scrape.err)" >&2; return 1; }
	sed '1,/^\r$/d' scrape.raw
}
# val FILE SERIES: the value of SERIES (name{labels} as printed), empty if absent
val() { awk -v s="$2" '$1 == s { print $2 + 0 }' "$1"; }
# ge A B: A >= B, numerically (values may be printed like 8.192e+06)
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

bh_init
bh_serve_opts="--metrics-addr $addr"
bh_serve
dev=$(bh add m --size 256M) || fail "add"
wait_for_dev "$dev"
echo 2 >"/sys/block/${dev#/dev/}/queue/nomerges" || fail "nomerges"

scrape >before.txt || fail "scrape before fio"
w='blockhash_device_writes_total{device="m"}'
wb='blockhash_device_written_bytes_total{device="m"}'
wh='blockhash_device_request_duration_seconds_count{device="m",op="write"}'
commits=blockhash_store_commit_duration_seconds_count
w0=$(val before.txt "$w")
[ "$w0" = 0 ] || fail "a new device's $w is '$w0', want 0"
b0=$(val before.txt "$wb")
h0=$(val before.txt "$wh")
c0=$(val before.txt "$commits")
[ -n "$c0" ] || fail "no $commits before fio"

fio --name=m --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
	--iodepth=16 --size=8000k --end_fsync=1 --randseed=9477 >fio.out 2>&1 &
fio_pid=$!
# Scrape while fio runs: the write counter never goes back.
last=0
scrapes=0
while kill -0 "$fio_pid" 2>/dev/null; do
	scrape >during.txt || fail "scrape while fio runs"
	now=$(val during.txt "$w")
	ge "$now" "$last" || fail "$w went back from $last to $now"
	last=$now
	scrapes=$((scrapes + 1))
	sleep 0.2
done
wait "$fio_pid" || fail "fio: $(tail -n 20 fio.out)"
issued=$(sed -n 's/.*issued rwts: total=[0-9]*,\([0-9]*\),.*/\1/p' fio.out | head -n 1)
[ "$issued" = 2000 ] || fail "fio issued '$issued' writes, want 2000: $(cat fio.out)"
log "fio issued $issued writes; $scrapes scrapes while it ran (last saw $last)"

scrape >after.txt || fail "scrape after fio"
w1=$(val after.txt "$w")
b1=$(val after.txt "$wb")
h1=$(val after.txt "$wh")
c1=$(val after.txt "$commits")
dw=$(awk -v a="$w1" -v b="$w0" 'BEGIN { print a - b }')
db=$(awk -v a="$b1" -v b="$b0" 'BEGIN { print a - b }')
dh=$(awk -v a="$h1" -v b="$h0" 'BEGIN { print a - b }')
log "writes +$dw, written bytes +$db, write latency samples +$dh, commits $c0 -> $c1"
ge "$dw" "$issued" || fail "$w moved by $dw, fio issued $issued"
ge "$db" $((issued * 4096)) || fail "$wb moved by $db, fio wrote $((issued * 4096))"
ge "$dh" "$issued" || fail "write latency histogram counted $dh, fio issued $issued"
ge "$c1" $((c0 + 1)) || fail "fio's fsync made no commit ($commits $c0 -> $c1)"
flushes=$(val after.txt 'blockhash_device_flushes_total{device="m"}')
ge "$flushes" 1 || fail "fio's fsync is no flush (flushes_total '$flushes')"
errs=$(val after.txt 'blockhash_device_errors_total{device="m",op="write"}')
[ "$errs" = 0 ] || fail "write errors: '$errs'"
data=$(val after.txt blockhash_store_data_bytes)
ge "$data" $((issued * 4096)) || fail "blockhash_store_data_bytes is '$data' after $issued blocks written"
for g in blockhash_store_stored_bytes blockhash_index_entries; do
	v=$(val after.txt "$g")
	ge "$v" 1 || fail "$g is '$v' after $issued blocks written"
done
[ "$(val after.txt blockhash_store_stats_up)" = 1 ] || fail "blockhash_store_stats_up is not 1"
[ -n "$(val after.txt blockhash_store_dedup_ratio)" ] || fail "no dedup ratio"
[ -n "$(val after.txt blockhash_store_free_extent_bytes)" ] || fail "no free extent space"
buckets=$(grep -c '^blockhash_device_request_duration_seconds_bucket{device="m",op="write",le=' after.txt)
[ "$buckets" -gt 10 ] || fail "write latency histogram has $buckets buckets"
metric metrics.fio_writes "$issued"
metric metrics.writes_counted "$dw"
metric metrics.scrapes_during_fio "$scrapes"

run bh del m --keep-data
scrape >gone.txt || fail "scrape after del"
! grep -q 'device="m"' gone.txt || fail "metrics of a device no longer served: $(grep 'device="m"' gone.txt | head -n 3)"
bh_stop
if scrape >/dev/null 2>&1; then
	fail "metrics still served after the daemon stopped"
fi
pass
