# shellcheck shell=bash
# Helpers for scenario scripts running inside the test VM (run by bash;
# busybox provides the small tools, coreutils/util-linux/e2fsprogs/fio the rest).
# Source it first:   . /bhvm/lib.sh
# A scenario passes when it exits 0 and fails otherwise; `fail MSG` exits 1.
# The init runs each scenario in its own process group in /tmp/work/NAME
# ($BHVM_WORK) and kills what is left when it ends or times out.

BHVM_SCENARIO=${BHVM_SCENARIO:-script}
BHVM_WORK=${BHVM_WORK:-$(pwd)}
BHVM_UBLK_IDS=""

log() { echo "[$BHVM_SCENARIO] $*"; }
fail() {
	echo "BHVM FAILMSG $BHVM_SCENARIO: $*"
	exit 1
}
pass() {
	log PASS
	exit 0
}
# metric KEY VALUE -> "BHVM METRIC <scenario> KEY=VALUE" for the host
metric() { echo "BHVM METRIC $BHVM_SCENARIO $1=$2"; }

# export_file NAME FILE: copy a small file (a profile, a log) to the host,
# base64 on the console; the host writes tests/vm/out/<run>/files/NAME
export_file() {
	echo "BHVM FILE $1 BEGIN"
	base64 "$2" | sed 's/^/BHVM B64 /'
	echo "BHVM FILE $1 END"
}

# run CMD...: run it, echoing it; fail the scenario if it fails
run() {
	log "+ $*"
	"$@" || fail "exit $?: $*"
}

require() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || fail "command $c not in the guest (not built or not packed)"
	done
}

# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds; 1 on timeout
wait_for() {
	_n=$(($1 * 10))
	shift
	while ! "$@" 2>/dev/null; do
		_n=$((_n - 1))
		[ "$_n" -gt 0 ] || return 1
		sleep 0.1
	done
}
wait_for_dev() { wait_for "${2:-10}" test -b "$1" || fail "$1 did not appear within ${2:-10}s"; }
_absent() { ! test -e "$1"; }
wait_gone() { wait_for "${2:-10}" _absent "$1" || fail "$1 still present after ${2:-10}s"; }

# --- ublktest servers (cmd/ublktest) ---------------------------------------
# ublk_start ID [ublktest add options...]: start `ublktest add -n ID ...` in
# the background, wait until it prints /dev/ublkbID and the node exists.
# Its pid is in $UBLK_PID (also ublk_pid ID), stdout/stderr in
# $BHVM_WORK/ublkID.{out,err}.
ublk_start() { _ublk_launch add "$@"; }
# ublk_recover ID [options...]: same with `ublktest recover`
ublk_recover() { _ublk_launch recover "$@"; }

_ublk_launch() {
	_cmd=$1 _id=$2
	shift 2
	require ublktest
	_out=$BHVM_WORK/ublk$_id.out
	: >"$_out"
	log "+ ublktest $_cmd -n $_id $*"
	ublktest "$_cmd" -n "$_id" "$@" >"$_out" 2>>"$BHVM_WORK/ublk$_id.err" &
	UBLK_PID=$!
	eval "BHVM_UBLK_PID_$_id=$UBLK_PID"
	case " $BHVM_UBLK_IDS " in *" $_id "*) ;; *) BHVM_UBLK_IDS="$BHVM_UBLK_IDS $_id" ;; esac
	_n=300
	while ! grep -qx "/dev/ublkb$_id" "$_out" 2>/dev/null; do
		if ! kill -0 "$UBLK_PID" 2>/dev/null; then
			wait "$UBLK_PID"
			fail "ublktest $_cmd -n $_id exited with $? before the device was live: $(tail -n 5 "$BHVM_WORK/ublk$_id.err")"
		fi
		_n=$((_n - 1))
		[ "$_n" -gt 0 ] || fail "ublktest $_cmd -n $_id printed no /dev/ublkb$_id within 30s"
		sleep 0.1
	done
	wait_for_dev "/dev/ublkb$_id" 10
	log "ublktest $_cmd -n $_id live as /dev/ublkb$_id (pid $UBLK_PID)"
}

ublk_pid() { eval "echo \${BHVM_UBLK_PID_$1:-}"; }

# ublk_stop ID [SIGNAL]: signal the server (TERM), expect exit 0 within 20 s
ublk_stop() {
	_sig=${2:-TERM}
	_p=$(ublk_pid "$1")
	[ -n "$_p" ] || fail "no server recorded for ublk id $1"
	log "stopping server of /dev/ublkb$1 (pid $_p, SIG$_sig)"
	kill -"$_sig" "$_p" 2>/dev/null
	wait_for 20 _dead "$_p" || fail "server of ublk $1 still running 20 s after SIG$_sig"
	wait "$_p"
	_rc=$?
	eval "BHVM_UBLK_PID_$1="
	[ "$_rc" -eq 0 ] || fail "server of ublk $1 exited with $_rc after SIG$_sig: $(tail -n 5 "$BHVM_WORK/ublk$1.err")"
}
_dead() { ! kill -0 "$1"; }

# ublk_kill ID: SIGKILL the server (crash), reap it
ublk_kill() {
	_p=$(ublk_pid "$1")
	[ -n "$_p" ] || fail "no server recorded for ublk id $1"
	log "SIGKILL server of /dev/ublkb$1 (pid $_p)"
	kill -KILL "$_p"
	wait "$_p" 2>/dev/null
	eval "BHVM_UBLK_PID_$1="
}

# stat_get FILE KEY: a counter from a --stats file ("KEY N" lines)
stat_get() { awk -v k="$2" '$1 == k {print $2; f=1} END {if (!f) print 0}' "$1" 2>/dev/null || echo 0; }
# stats_settle: the stats file is rewritten every 100 ms
stats_settle() { sleep 0.4; }

# fio_terse ARGS...: run fio with one terse v3 line, stored in $FIO_LINE;
# fio_field N picks field N (7 read KiB/s, 8 read IOPS, 48 write KiB/s, 49 write IOPS)
fio_terse() {
	log "+ fio $*"
	FIO_LINE=$(fio --output-format=terse --terse-version=3 --group_reporting "$@") ||
		fail "fio failed: $*
$FIO_LINE"
	FIO_LINE=$(echo "$FIO_LINE" | grep '^3;' | tail -n 1)
}
fio_field() { echo "$FIO_LINE" | cut -d';' -f"$1"; }

# speed_compare TEST UNIT FIELD "NAME=DEV ..." FIO_ARGS...: fio on each DEV
# in BHVM_SPEED_ROUNDS rounds (default 2), the order rotated every round so
# that drift over time weighs on every device alike; emits metric
# NAME.TEST.UNIT, the mean over the rounds of terse field FIELD (KiB/s
# fields turned into MiB/s when UNIT is MiBps).
speed_compare() {
	local test=$1 unit=$2 field=$3 rounds=${BHVM_SPEED_ROUNDS:-2} r i d v
	local -a devs
	read -r -a devs <<<"$4"
	shift 4
	local -A sum=()
	for ((r = 0; r < rounds; r++)); do
		for ((i = 0; i < ${#devs[@]}; i++)); do
			d=${devs[(i + r) % ${#devs[@]}]}
			fio_terse --name="$test" --filename="${d#*=}" "$@"
			v=$(fio_field "$field")
			sum[${d%%=*}]=$((${sum[${d%%=*}]:-0} + v))
		done
	done
	for d in "${devs[@]}"; do
		v=$((sum[${d%%=*}] / rounds))
		[ "$unit" = MiBps ] && v=$((v / 1024))
		metric "${d%%=*}.$test.$unit" "$v"
	done
}

# On exit: on failure show the servers' stderr; stop servers still running.
_bhvm_exit() {
	_rc=$?
	trap - EXIT
	for _id in $BHVM_UBLK_IDS; do
		if [ "$_rc" -ne 0 ] && [ -s "$BHVM_WORK/ublk$_id.err" ]; then
			echo "--- ublktest -n $_id stderr (last 30 lines) ---"
			tail -n 30 "$BHVM_WORK/ublk$_id.err"
		fi
		_p=$(ublk_pid "$_id")
		if [ -n "$_p" ] && kill -0 "$_p" 2>/dev/null; then
			kill -TERM "$_p" 2>/dev/null
			wait_for 10 _dead "$_p"
		fi
	done
	exit "$_rc"
}
trap _bhvm_exit EXIT
trap 'exit 143' TERM INT
