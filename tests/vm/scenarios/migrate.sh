#!/bin/bash
# bhvm-timeout: 420
# Live migration of a served device between two daemons with separate
# stores, on the real driver ("host" A: the default socket and store s1;
# "host" B: store s2 on socket /run/b2.sock; the remote shell is a local
# script that ignores HOST and runs the rest, as ssh would). Device vm on
# A holds a mounted ext4 with files written before; during the migration
# fio writes to it (crc32c verify headers, its verify state saved) and a
# probe loop writes small files with fsync, noting each one's checksum
# once its fsync returned. `blockhash migrate vm hostb` runs rounds until
# one sends at most 512 KiB, then switches. After it: B serves vm, A does
# not; A's held I/O failed (the device went away) rather than hanging.
# On B the device holds what A acknowledged before the switch: the image
# is what a power cut at the pause would leave (the guest moved with its
# file system mounted), so after the journal replay of a mount every file
# written before the migration and every probe file whose fsync returned
# verifies, fio verifies the writes it completed (--verify_only with its
# saved state), and e2fsck -fn is clean (before the replay it is run and
# its verdict logged). B's device, held open from the first round as the
# destination QEMU would hold it and read through the page cache then,
# reads the same through the cache as directly after the switch (the
# daemon drops the cached pages when a receive replaces the content). B
# keeps serving vm after A's daemon stops; both stores pass fsck. Metrics: the switch-over pause migrate reports, the
# whole migration, and the probe's longest gap between two acknowledged
# writes on A before the switch.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

require fio mkfs.ext4 e2fsck sha256sum
blockhash help migrate >/dev/null 2>&1 || fail "this blockhash has no migrate command"

S2=$BHVM_WORK/s2
SB=/run/b2.sock
B_PID=""
bhb() { blockhash --store "$S2" --socket "$SB" "$@"; }
_b_ready() { kill -0 "$B_PID" && bhb status >/dev/null; }
_mig_exit() {
	_rc=$?
	if [ -n "$B_PID" ] && kill -0 "$B_PID" 2>/dev/null; then
		[ "$_rc" -ne 0 ] && { echo "--- daemon B log (last 30 lines) ---"; tail -n 30 "$BHVM_WORK/serve-b.log"; }
		kill -TERM "$B_PID" 2>/dev/null
		wait_for 30 _dead "$B_PID"
	fi
	if [ "$_rc" -ne 0 ] && [ -s "$BHVM_WORK/migrate.log" ]; then
		echo "--- migrate output ---"
		tail -n 40 "$BHVM_WORK/migrate.log"
	fi
	(exit "$_rc")
	_bh_exit
}
trap _mig_exit EXIT

# served_path SOCKETCMD NAME: the /dev/ublkbN its daemon serves NAME on
served_path() { bh_served "$1" "$2" path; }
served_state() { bh_served "$1" "$2" state; }
# now_ms: the wall clock in milliseconds (busybox date has no %N)
now_ms() {
	_t=${EPOCHREALTIME/[.,]/}
	echo $((_t / 1000))
}

log "host A: store s1, default socket; host B: store s2, socket $SB"
bh_init 16M
run bhb init --extent-size 16M
BH_SERVE_ARGS=-v bh_serve
log "+ blockhash (B) serve"
blockhash --store "$S2" --socket "$SB" -v serve >>"$BHVM_WORK/serve-b.log" 2>&1 &
B_PID=$!
wait_for 60 _b_ready || fail "daemon B not ready: $(tail -n 20 "$BHVM_WORK/serve-b.log")"

# the remote shell: like ssh HOST CMD..., but HOST is this machine
rsh=$BHVM_WORK/rsh
{
	echo "#!$(command -v bash)" # not /bin/bash: the guest has bash elsewhere
	echo '# rsh HOST COMMAND...: run COMMAND (joined by spaces, as ssh does) here'
	echo 'shift'
	echo 'exec bash -c "$*"'
} >"$rsh"
chmod +x "$rsh"

dA=$(bh add vm --size 128M) || fail "add vm on A"
wait_for_dev "$dA"
run mkfs.ext4 -q -F "$dA"
mkdir -p /mnt/a /mnt/b
run mount "$dA" /mnt/a
mkdir -p /mnt/a/probe
for i in 1 2 3; do
	run dd if=/dev/urandom of=/mnt/a/f$i bs=1M count=4 status=none
done
(cd /mnt/a && sha256sum f1 f2 f3) >"$BHVM_WORK/before.sums"
# fio's file is written out in full first: its O_DIRECT writes then
# overwrite allocated blocks, so each one acknowledged is on the device
# with no journal commit still due (a write into an unwritten extent
# would need one to survive the switch)
run dd if=/dev/zero of=/mnt/a/fio.dat bs=1M count=24 conv=fsync status=none
sync

log "fio and the probe write to A's file system during the migration"
fio --name=mig --filename=/mnt/a/fio.dat --size=24M --rw=randwrite --bs=4k --direct=1 --ioengine=psync --fallocate=none \
	--verify=crc32c --do_verify=0 --verify_state_save=1 --aux-path="$BHVM_WORK" --rate=192k \
	--eta=never --output="$BHVM_WORK/fio.log" &
fio_pid=$!
probe_sums=$BHVM_WORK/probe.sums
: >"$probe_sums"
(
	i=0
	while :; do
		i=$((i + 1))
		head -c 4096 /dev/urandom >"$BHVM_WORK/p.tmp"
		dd if="$BHVM_WORK/p.tmp" of="/mnt/a/probe/p$i" bs=4k oflag=direct conv=fsync status=none 2>/dev/null || exit 0
		echo "$(now_ms) $(sha256sum <"$BHVM_WORK/p.tmp" | cut -d' ' -f1)  p$i" >>"$probe_sums"
		sleep 0.1
	done
) &
probe_pid=$!
sleep 5
kill -0 "$fio_pid" || fail "fio ended early: $(tail -n 20 "$BHVM_WORK/fio.log")"
[ -s "$probe_sums" ] || fail "the probe wrote nothing"

# B's device, as the destination QEMU would, is held open from the moment
# it appears (after the first round) and read through the page cache: the
# pages cached then must not survive the later rounds' changes (the
# daemon drops them when a receive replaces the content).
(
	for _ in $(seq 600); do
		p=$(served_path bhb vm)
		[ -n "$p" ] && [ -b "$p" ] && break
		sleep 0.2
	done
	[ -n "$p" ] || exit 1
	exec 7<"$p"
	dd if="$p" of=/dev/null bs=1M status=none
	echo "$p" >"$BHVM_WORK/held"
	sleep 600
) &
holder_pid=$!

log "+ blockhash migrate vm hostb"
t0=$(now_ms)
# rounds until one sends at most 512 KiB: the switch then sends little
bh migrate vm hostb -e "$rsh" --remote-bin "blockhash --store $S2 --socket $SB" --rounds 6 --max-delta 512K \
	>"$BHVM_WORK/migrate.log" 2>&1 ||
	fail "migrate failed: $(tail -n 20 "$BHVM_WORK/migrate.log")"
t1=$(now_ms)
log "migrate took $((t1 - t0)) ms:"
grep -E '^(round|switch)' "$BHVM_WORK/migrate.log" | sed 's/^/    /'
grep -q '^switch:' "$BHVM_WORK/migrate.log" || fail "migrate printed no switch line: $(cat "$BHVM_WORK/migrate.log")"
metric migrate_ms $((t1 - t0))
pause=$(grep -oiE 'pause[a-z_ ]*[=: ]+[0-9.]+ ?(ms|s|µs|us)?' "$BHVM_WORK/migrate.log" | head -n 1)
[ -n "$pause" ] && log "pause reported by migrate: $pause"
pause_ms=$(printf '%s\n' "$pause" | awk '{
	if (match($0, /[0-9.]+ ?(ms|s|µs|us)?$/)) { v = substr($0, RSTART); n = v + 0;
		if (v ~ /ms$/) print int(n); else if (v ~ /(µs|us)$/) print int(n / 1000); else if (v ~ /s$/) print int(n * 1000); else print int(n) } }')
[ -n "$pause_ms" ] && metric switchover_pause_ms "$pause_ms"

log "A's held I/O fails once A released vm (nothing hangs)"
wait_for 60 _dead "$probe_pid" || fail "the probe still runs 60 s after migrate returned"
wait_for 60 _dead "$fio_pid" || fail "fio still runs 60 s after migrate returned"
wait "$fio_pid"
fio_rc=$?
log "fio on A ended with $fio_rc: $(grep -m1 -E 'err=|error' "$BHVM_WORK/fio.log")"
state=$(served_state bh vm)
[ -z "$state" ] || fail "A still lists vm ($state)"
umount /mnt/a 2>/dev/null || umount -l /mnt/a || fail "umount of A's dead mount"

n_probe=$(wc -l <"$probe_sums")
[ "$n_probe" -ge 5 ] || fail "only $n_probe probe writes were acknowledged"
gap=$(awk 'NR > 1 && $1 - p > g { g = $1 - p } { p = $1 } END { print g + 0 }' "$probe_sums")
log "$n_probe probe files acknowledged on A; longest gap between two: $gap ms"
metric probe_gap_ms "$gap"

log "B serves vm with what A acknowledged"
dB=$(served_path bhb vm)
[ -n "$dB" ] || fail "B does not serve vm: $(bhb list 2>&1)"
[ "$(served_state bhb vm)" = running ] || fail "vm on B is $(served_state bhb vm)"
[ "$dB" != "$dA" ] || fail "B serves vm on A's old device $dA"
wait_for_dev "$dB"
[ "$(cat "$BHVM_WORK/held" 2>/dev/null)" = "$dB" ] || fail "B's device was not held open during the migration"
if ! cmp <(dd if="$dB" bs=1M status=none) <(dd if="$dB" bs=1M iflag=direct status=none) >"$BHVM_WORK/cmp.log" 2>&1; then
	fail "B's device read through the page cache differs from the device: stale pages ($(cat "$BHVM_WORK/cmp.log"))"
fi
log "B's device read through the page cache (held open since the first round) matches the device"
# The image is what a power cut at the pause would leave: e2fsck -n may
# find the journal still to replay (the guest moved with its file system
# mounted), which the mount does.
if e2fsck -fn "$dB" >"$BHVM_WORK/fsck-before.log" 2>&1; then
	log "e2fsck -fn before the journal replay: clean"
else
	log "e2fsck -fn before the journal replay: exit $? ($(grep -m2 -iE 'journal|recover' "$BHVM_WORK/fsck-before.log" | tr '\n' ' '))"
fi
run mount "$dB" /mnt/b
(cd /mnt/b && sha256sum -c --quiet "$BHVM_WORK/before.sums") || fail "files written before the migration differ on B"
cut -d' ' -f2- "$probe_sums" >"$BHVM_WORK/probe.check"
(cd /mnt/b/probe && sha256sum -c --quiet "$BHVM_WORK/probe.check") || fail "probe files acknowledged on A differ or are missing on B"
if ls "$BHVM_WORK"/*verify.state >/dev/null 2>&1; then
	run fio --name=mig --filename=/mnt/b/fio.dat --size=24M --rw=randwrite --bs=4k --direct=1 --ioengine=psync --fallocate=none \
		--verify=crc32c --verify_only --verify_state_load=1 --aux-path="$BHVM_WORK" --verify_fatal=1 \
		--eta=never --output="$BHVM_WORK/fio-verify.log"
	log "fio verified on B: $(grep -m1 -E 'READ:' "$BHVM_WORK/fio-verify.log")"
else
	fail "fio saved no verify state on A (ls: $(ls "$BHVM_WORK"))"
fi
echo "written on B" >/mnt/b/onb
kill "$holder_pid" 2>/dev/null
wait "$holder_pid" 2>/dev/null
run umount /mnt/b
run e2fsck -fn "$dB"

log "B keeps serving vm after A stops"
bh_down
run mount "$dB" /mnt/b
[ "$(cat /mnt/b/onb)" = "written on B" ] || fail "B lost its own write"
run umount /mnt/b
run bhb del --all --keep-data
kill -TERM "$B_PID"
wait_for 90 _dead "$B_PID" || fail "daemon B still running 90 s after SIGTERM"
wait "$B_PID" || fail "daemon B exited with $?"
B_PID=""
out=$(bhb fsck) || fail "fsck of B's store: $out"
out=$(bh fsck) || fail "fsck of A's store: $out"
pass
