#!/bin/bash
# bhvm-timeout: 300
# kill -9 campaign: $BHVM_CYCLES cycles (default 10; `make soak` runs 100)
# of SIGKILL to the daemon at a random moment while fio writes to a
# store-backed device, in a store made with 128 KiB extents so that it
# grows all the time (the kills land during extent growth and commits).
# Each cycle: fio writes one 1 MiB region with verify headers (a fresh
# seed) and flushes it; a noise fio writes unique data with frequent
# flushes to a 4 MiB window not written before (the windows cover
# [32M, 160M), so the first 32 cycles all grow the store; later ones
# overwrite and reuse slots);
# the daemon is killed 0-3 s later and started again (user recovery: the
# device never goes away and the noise fio carries on); every region
# flushed so far reads back with its latest seed (fio --verify_only); then
# a plain stop (devices kept), `blockhash fsck` offline, and a start again.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

cycles=${BHVM_CYCLES:-10}
regions=16 # 1 MiB regions at [0, 16M); noise windows of 4 MiB in [32M, 160M)
log "kill -9 campaign: $cycles cycles"

bh_init 128K # at most ~1200 extents (two files each) for a 160 MiB device
bh_serve
dev=$(bh add v --size 160M -q 2) || fail "add"
wait_for_dev "$dev"
common="--filename=$dev --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k --iodepth=16
 --verify=pattern --verify_fatal=1"
# Each region's blocks hold its seed and their own offset, repeated: the
# check is exact (a stale block of an earlier seed fails it, which a
# checksum-in-header verify would let pass) and every block is unique.
declare -a seed
pattern() { printf '0x%08x%%o' "$1"; }
region_job() { echo "--name=r$1 --offset=$1M --size=1M --verify_pattern=$(pattern "${seed[$1]}")"; }
extents() { find "$BH_STORE" -name 'extent-*.dat' | wc -l; }

# hung MSG: show where the I/O waits (fio, the device's queue, the
# daemon's goroutines), then fail
hung() {
	log "fio noise log: $(tail -n 15 "$BHVM_WORK/fio-n.log")"
	log "inflight $(cat /sys/block/"${dev#/dev/}"/inflight)"
	for p in $(pgrep fio); do
		log "fio $p $(awk '/^State/ {print $2}' "/proc/$p/status"): $(tr '\n' ' ' <"/proc/$p/stack" 2>/dev/null)"
	done
	kill -QUIT "$BH_PID" 2>/dev/null && sleep 2 # Go dumps every goroutine into serve.log
	grep -A 12 -E "^goroutine .*(semacquire|sync.Mutex|sync.Cond|chan receive|chan send)" "$BHVM_WORK/serve.log" | head -n 150
	fail "$1"
}

t0=$(date +%s)
for ((i = 1; i <= cycles; i++)); do
	r=$((i % regions))
	seed[r]=$((1000 + i))
	# shellcheck disable=SC2046,SC2086
	fio $common --do_verify=0 --end_fsync=1 $(region_job $r) >"$BHVM_WORK/fio-w.log" 2>&1 ||
		fail "cycle $i: writing region $r failed: $(tail -n 20 "$BHVM_WORK/fio-w.log")"
	if [ "$i" = 1 ]; then
		# the check must be able to fail: the same region under another seed
		# shellcheck disable=SC2086
		if fio $common --verify_only --name=wrong --offset=${r}M --size=1M --verify_pattern="$(pattern 7)" >/dev/null 2>&1; then
			fail "fio --verify_only passed with a wrong seed: the verification checks nothing"
		fi
	fi
	ext0=$(extents)
	fio --name=noise --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bsrange=4k-64k \
		--iodepth=16 --offset=$((32 + (i - 1) % 32 * 4))M --size=4M --refill_buffers --fsync=16 --time_based --runtime=600 \
		>"$BHVM_WORK/fio-n.log" 2>&1 &
	noise=$!
	sleep "$((RANDOM % 3)).$((RANDOM % 10))"
	kill -0 $noise 2>/dev/null || fail "cycle $i: noise fio ended early: $(tail -n 20 "$BHVM_WORK/fio-n.log")"
	bh_kill
	[ -b "$dev" ] || fail "cycle $i: $dev vanished when the daemon was killed"
	n0=$(wc -l <"$BHVM_WORK/serve.log")
	bh_serve
	tail -n +"$((n0 + 1))" "$BHVM_WORK/serve.log" | grep -q "recovered device" ||
		fail "cycle $i: the daemon did not recover the device: $(tail -n 10 "$BHVM_WORK/serve.log")"
	sleep 0.5
	kill -INT $noise 2>/dev/null
	wait_for 120 _dead $noise || hung "cycle $i: noise fio does not end 120 s after SIGINT"
	wait $noise
	if grep -qE "io_u error|Input/output error|No space left" "$BHVM_WORK/fio-n.log"; then
		fail "cycle $i: the noise fio saw errors across the kill: $(grep -E 'error' "$BHVM_WORK/fio-n.log" | head -n 5)"
	fi
	jobs=""
	for ((j = 0; j < regions; j++)); do
		[ -n "${seed[j]:-}" ] && jobs="$jobs $(region_job $j)"
	done
	# shellcheck disable=SC2086
	fio $common --verify_only $jobs >"$BHVM_WORK/fio-v.log" 2>&1 ||
		fail "cycle $i: flushed data lost after the kill: $(grep -iE 'verify|bad|error' "$BHVM_WORK/fio-v.log" | head -n 10)"
	bh_stop
	out=$(bh fsck 2>&1) || fail "cycle $i: fsck after the kill: $out"
	bh_serve
	log "cycle $i: killed, recovered, $(echo "$jobs" | grep -o -- --name | wc -l) regions verified, fsck clean, extents $ext0 -> $(extents)"
done
metric cycles "$cycles"
metric secs_per_cycle $((($(date +%s) - t0) / cycles))
metric extents "$(extents)"
bh_down
out=$(bh fsck 2>&1) || fail "final fsck: $out"
pass
