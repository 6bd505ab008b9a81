# shellcheck shell=bash
# Helpers for scenarios that run the Blockhash daemon in the test VM.
# Source after lib.sh:   . /bhvm/lib.sh; . /bhvm/blockhash.sh
# The store lives on the guest's tmpfs, with small extents (tmpfs
# preallocation costs RAM).

BH_STORE=${BH_STORE:-$BHVM_WORK/store}
BH_PID=""

bh() { blockhash --store "$BH_STORE" "$@"; }

# bh_init [EXTENT]: create the store
bh_init() { run bh init --extent-size "${1:-64M}"; }

# bh_serve: start `blockhash [$BH_SERVE_ARGS] serve [$bh_serve_opts]` in the
# background, wait until it answers
bh_serve() {
	require blockhash
	log "+ blockhash serve"
	# the binary itself, not the bh function: $! must be the daemon's pid
	# shellcheck disable=SC2086 # BH_SERVE_ARGS: extra global flags, split on purpose
	# shellcheck disable=SC2154 # bh_serve_opts: serve's own flags, set by the caller
	blockhash --store "$BH_STORE" ${BH_SERVE_ARGS:-} serve ${bh_serve_opts:-} >>"$BHVM_WORK/serve.log" 2>&1 &
	BH_PID=$!
	wait_for 60 _bh_ready || fail "daemon not ready within 60s: $(tail -n 20 "$BHVM_WORK/serve.log")"
	log "daemon ready (pid $BH_PID)"
}
_bh_ready() { kill -0 "$BH_PID" && blockhash status >/dev/null; }

# bh_stop: SIGTERM, expect exit 0 (devices drained, store flushed); the
# kernel devices stay, their I/O waiting, for the next bh_serve to recover
bh_stop() {
	log "stopping daemon (pid $BH_PID)"
	kill -TERM "$BH_PID" 2>/dev/null
	wait_for 90 _dead "$BH_PID" || fail "daemon still running 90s after SIGTERM"
	wait "$BH_PID"
	_rc=$?
	BH_PID=""
	[ "$_rc" -eq 0 ] || fail "daemon exited with $_rc after SIGTERM: $(tail -n 20 "$BHVM_WORK/serve.log")"
}

# bh_down: remove every kernel device (data kept in the store), then
# bh_stop: nothing is left behind
bh_down() {
	run bh del --all --keep-data
	bh_stop
}

# bh_kill: SIGKILL (a crash)
bh_kill() {
	log "SIGKILL daemon (pid $BH_PID)"
	kill -KILL "$BH_PID"
	wait "$BH_PID" 2>/dev/null
	BH_PID=""
}

# bh_stat KEY: a top-level integer of `blockhash stats --json`
bh_stat() { bh stats --json | sed -n "s/^  \"$1\": \([0-9]*\).*/\1/p" | head -n 1; }

# bh_served [CMD] NAME KEY: KEY (path, state, id, read_only, ...) of how
# NAME is served, from CMD's (default bh) `list --json`; nothing when NAME
# is not served. An entry's own keys are indented 4 spaces, those of its
# "served" object 6.
bh_served() {
	_c=bh
	[ $# -eq 3 ] && { _c=$1; shift; }
	"$_c" list --json | awk -v n="$1" -v k="$2" '
		/^    "name": / { cur = $0; sub(/^    "name": "/, "", cur); sub(/",?$/, "", cur) }
		cur == n && $0 ~ "^      \"" k "\": " { v = $0; sub(/^ *"[a-z_]*": "?/, "", v); sub(/"?,?$/, "", v); print v; exit }'
}

# bh_rss: the daemon's resident memory in KiB
bh_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$BH_PID/status"; }

_bh_exit() {
	_rc=$?
	if [ -n "$BH_PID" ] && kill -0 "$BH_PID" 2>/dev/null; then
		[ "$_rc" -ne 0 ] && { echo "--- blockhash serve log (last 30 lines) ---"; tail -n 30 "$BHVM_WORK/serve.log"; }
		kill -TERM "$BH_PID" 2>/dev/null
		wait_for 30 _dead "$BH_PID"
	elif [ "$_rc" -ne 0 ] && [ -s "$BHVM_WORK/serve.log" ]; then
		echo "--- blockhash serve log (last 30 lines) ---"
		tail -n 30 "$BHVM_WORK/serve.log"
	fi
	(exit "$_rc")
	_bhvm_exit
}
trap _bh_exit EXIT
