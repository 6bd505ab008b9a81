#!/bin/bash
# replica.sh - figures for replication between two stores on this machine
# (issue 10's Figures), reported as measured, never asserted.
#
#   tests/bench/replica.sh [--keep]
#
# Two "hosts" are network namespaces (tests/hosts/netns, prefix bhbench),
# the transport is tests/hosts/rsh over their veth link.
#  1. OS image and sibling: two ext4 images of OS_GIB (default 1) GiB made
#     with mke2fs -d from copies of this machine's /usr files; the sibling
#     has some files changed (rewritten shifted), added and removed. B holds
#     the sibling; A sends the image. Wire bytes against the yardstick
#     (tests/bench/lackbytes: the distinct blocks B lacks, compressed as the
#     protocol compresses them, plus the map bytes sync reports), and the
#     map's bytes as a share of the logical size.
#  2. Incremental after changing 1% of the image's blocks: bytes the sync
#     read from disk (read_bytes of its process tree, store A's page cache
#     dropped first) and bytes sent, beside the same for the full send.
#  3. Throughput, whole-process wall times: a full send of the image to an
#     empty store, to B holding the sibling, to a store holding the image's
#     first half (with LZ4 and with --compress none); dd through the pipe
#     into a file, plain and synced at the end (conv=fsync: durable, as a
#     receive is); qemu-img convert -O raw of the image into a file (when
#     qemu-img is installed); three runs of each, then their medians
#     and the sync/dd ratios (issue 10: blockhash should win whenever the
#     receiver holds anything already).
# BH_BENCH_PREFIX names the namespaces (default bhbench), so that two runs
# on one machine do not take down each other's.
#  4. The same on the A-B link limited to LINK_RATE (default 1gbit; tc
#     tbf; LINK_RATE=none skips it), to B holding the sibling, to a
#     store holding the image's first half, and to an empty store.
# Needs root; about 4 GiB of disk under $TMPDIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KEEP=0
[ "${1:-}" = --keep ] && KEEP=1
OS_GIB=${OS_GIB:-1}
export BH_HOSTS_PREFIX=${BH_BENCH_PREFIX:-bhbench}
NETNS=$ROOT/tests/hosts/netns

skip() { echo "SKIP replica bench: $*"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root (network namespaces)"
command -v mke2fs >/dev/null || skip "no mke2fs"
"$NETNS" available || skip "cannot make network namespaces"

export PATH=$PATH:/usr/local/go/bin
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bh-bench.XXXXXX")
BIN=$ROOT/bin/blockhash
RSH=$WORK/rsh
LACK=$WORK/lackbytes
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/blockhash &&
	CGO_ENABLED=0 go build -o "$RSH" ./tests/hosts/rsh &&
	CGO_ENABLED=0 go build -o "$LACK" ./tests/bench/lackbytes)
eval "$("$NETNS" env)"
RSH_PID=
cleanup() {
	[ -n "$RSH_PID" ] && kill "$RSH_PID" 2>/dev/null || true
	"$NETNS" down || true
	if [ "$KEEP" = 1 ]; then echo "work files kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
# A run killed before its cleanup leaves the namespaces and what ran in
# them (an rsh server of a deleted build): start from fresh ones.
"$NETNS" down
"$NETNS" up >/dev/null
ip netns exec "$NS_B" "$RSH" serve "$ADDR_B:2222" 2>"$WORK/rsh-serve.log" &
RSH_PID=$!
for _ in $(seq 50); do ip netns exec "$NS_A" "$RSH" "$ADDR_B" true 2>/dev/null && break; sleep 0.1; done

STORE_A=$WORK/a STORE_B=$WORK/b STORE_C=$WORK/c
bh() { "$BIN" --store "$@"; }
for s in "$STORE_A" "$STORE_B" "$STORE_C"; do bh "$s" init >/dev/null; done
say() { echo "$*" | tee -a "$WORK/figures.txt"; }
now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", 100 * a / b }'; }
# drop_cache DIR: drop the page cache of DIR's files (after writing them back).
drop_cache() {
	sync
	find "$1" -type f -exec dd if={} iflag=nocache count=0 status=none \;
}
# sync_to STORE DEV: sync A's DEV to STORE on B; the stats line goes to
# $WORK/stats, the process tree's read_bytes and rchar to $WORK/io.
sync_to() {
	# bash reaps blockhash (which reaps rsh), so its /proc/self/io then
	# counts theirs.
	ip netns exec "$NS_A" bash -c '"$@" 2>"'"$WORK"'/sync.err"; rc=$?; grep -E "^(rchar|read_bytes)" /proc/$$/io >"'"$WORK"'/io"; exit $rc' _ \
		"$BIN" --store "$STORE_A" sync "$2" "$ADDR_B" -e "$RSH" --remote-bin "$BIN --store $1" --stats ${COMPRESS:-} ||
		{ cat "$WORK/sync.err" >&2; exit 1; }
	grep '^{' "$WORK/sync.err" | tail -1 >"$WORK/stats"
}
# jfield KEY: the value of KEY in the flat JSON on stdin.
jfield() { grep -o "\"$1\": *[^,}]*" | head -1 | sed 's/^[^:]*: *//; s/"//g'; }
st() { jfield "$1" <"$WORK/stats"; }
io() { awk -v k="$1:" '$1 == k { print $2 }' "$WORK/io"; }

# ---- 1. OS image and sibling ----
TREE=$WORK/tree
mkdir -p "$TREE"
LIMIT=$((OS_GIB * 3 * 256 << 20)) # files fill about 3/4 of the image
# (a hard-linked file counts once, as it is stored once)
# (awk reads to the end: stopping early would fail the pipe)
{ find /usr/lib/x86_64-linux-gnu /usr/share -xdev -type f -readable -printf '%s %i %p\n' 2>/dev/null || true; } |
	sort -k3 | awk -v lim="$LIMIT" 'full { next } !seen[$2]++ { s += $1; if (s > lim) { full = 1; next } } { sub(/^[^ ]+ [^ ]+ /, ""); print }' >"$WORK/files"
tar -cf - -T "$WORK/files" 2>/dev/null | tar -xf - -C "$TREE"
NFILES=$(wc -l <"$WORK/files")
mkfs() { mke2fs -q -F -t ext4 -b 4096 -U 5b1c0c4e-1d1a-4d0e-9b1a-0c0ffee00001 -E root_owner=0:0 -d "$1" "$2" "${OS_GIB}G"; }
mkfs "$TREE" "$WORK/os.img"
# The sibling: every 50th file rewritten (a line put before it shifts
# every block), every 100th removed, files of another directory added.
awk 'NR % 50 == 7' "$WORK/files" | while read -r f; do
	{ echo "sibling build of $f"; cat "$TREE/$f"; } >"$WORK/x" && mv "$WORK/x" "$TREE/$f"
done
awk 'NR % 100 == 13' "$WORK/files" | while read -r f; do rm -f "$TREE/$f"; done
ADD=$((LIMIT / 100))
{ find /usr/lib/python3* /usr/lib/gcc -xdev -type f -readable -printf '%s %p\n' 2>/dev/null || true; } |
	sort -k2 | awk -v lim="$ADD" '{ if (s + $1 > lim) next; s += $1; sub(/^[^ ]+ /, ""); print }' >"$WORK/added"
tar -cf - -T "$WORK/added" 2>/dev/null | tar -xf - -C "$TREE"
mkfs "$TREE" "$WORK/sib.img"
rm -rf "$TREE"
say "== OS image: ${OS_GIB} GiB ext4 (mke2fs -d) of $NFILES files from /usr/lib/x86_64-linux-gnu and /usr/share ($((LIMIT >> 20)) MiB);"
say "   sibling: $(awk 'NR % 50 == 7' "$WORK/files" | wc -l) files rewritten, $(awk 'NR % 100 == 13' "$WORK/files" | wc -l) removed, $(wc -l <"$WORK/added") added ($((ADD >> 20)) MiB)"

bh "$STORE_B" import sib "$WORK/sib.img" >/dev/null
bh "$STORE_A" import os "$WORK/os.img" >/dev/null
"$LACK" "$WORK/os.img" "$WORK/sib.img" >"$WORK/lack.json"
drop_cache "$STORE_A"
t=$(now)
sync_to "$STORE_B" os
T_SIB=$(since "$t")
WIRE=$(($(st wire_out_bytes) + $(st wire_in_bytes)))
MAP=$(st map_bytes)
LZ4=$(jfield lacking_lz4_bytes <"$WORK/lack.json")
REF=$((LZ4 + MAP))
LOGICAL=$((OS_GIB << 30))
FULL_READ=$(io read_bytes)
say "== send of the image to B holding the sibling (wall ${T_SIB}s)"
say "   sync --stats: $(cat "$WORK/stats")"
say "   yardstick:    $(cat "$WORK/lack.json")"
say "   wire bytes (out+in) $WIRE; distinct blocks B lacks, LZ4 as the protocol does, $LZ4 + map $MAP = $REF; wire/yardstick $(pct "$WIRE" "$REF")%"
say "   map bytes $MAP = $(pct "$MAP" "$LOGICAL")% of the logical size ($LOGICAL bytes)"
say "   process tree: read_bytes $FULL_READ, rchar $(io rchar)"

# ---- 2. incremental after changing 1% of the blocks ----
BLOCKS=$((LOGICAL / 4096))
CHANGED=$((BLOCKS / 100))
cp "$WORK/os.img" "$WORK/os2.img"
shuf -i 0-$((BLOCKS - 1)) -n "$CHANGED" --random-source=<(yes) | while read -r b; do
	dd if=/dev/urandom of="$WORK/os2.img" bs=4096 count=1 seek="$b" conv=notrunc status=none
done
bh "$STORE_A" import os "$WORK/os2.img" >/dev/null
drop_cache "$STORE_A"
t=$(now)
sync_to "$STORE_B" os
say "== incremental after changing $CHANGED of $BLOCKS blocks (1%) (wall $(since "$t")s)"
say "   sync --stats: $(cat "$WORK/stats")"
INC_READ=$(io read_bytes) INC_RCHAR=$(io rchar)
say "   sent (wire_out_bytes) $(st wire_out_bytes) = $(pct "$(st wire_out_bytes)" "$LOGICAL")% of the logical size; blocks read and sent $(st blocks_sent) of $BLOCKS"
# The fixed cost of a sync (opening the store, its index, the snapshots):
# one more sync with nothing changed, page cache dropped the same way.
drop_cache "$STORE_A"
sync_to "$STORE_B" os
say "   read from disk (read_bytes): $INC_READ; the full send above $FULL_READ; a sync with nothing changed $(io read_bytes) (its stats: blocks_scanned $(st blocks_scanned), wire_out $(st wire_out_bytes))"
say "   rchar (every read call, the stream through the pipes included): $INC_RCHAR"

# ---- 3. throughput ----
say "== throughput, whole-process wall times, ${OS_GIB} GiB image (page cache warm)"
bh "$STORE_A" import os "$WORK/os.img" >/dev/null
cat "$WORK/os.img" >/dev/null
# STORE_H holds the image's first half (as a device of its own): a
# receiver that holds half of what it is sent.
STORE_H=$WORK/h
rm -rf "$STORE_H" && bh "$STORE_H" init >/dev/null
head -c $((LOGICAL / 2)) "$WORK/os.img" >"$WORK/half.img"
bh "$STORE_H" import half "$WORK/half.img" >/dev/null
rm -f "$WORK/half.img"
# sync_half MODE: A's os to STORE_H with --compress MODE (the last run's
# os deleted first, outside the time).
sync_half() {
	bh "$STORE_H" delete os --recursive >/dev/null 2>&1 || true
	t=$(now)
	COMPRESS="--compress $1" sync_to "$STORE_H" os >/dev/null
	since "$t"
}
# dd_durable: dd through the same pipe into a file synced at the end, as a
# receive is (dd_plain leaves it in the page cache).
dd_plain() { ip netns exec "$NS_A" bash -c 'dd if="$1" bs=1M status=none | "$2" "$3" "cat > $4"' _ "$WORK/os.img" "$RSH" "$ADDR_B" "$WORK/dd.out"; }
dd_durable() { ip netns exec "$NS_A" bash -c 'dd if="$1" bs=1M status=none | "$2" "$3" "dd of=$4 bs=1M conv=fsync status=none"' _ "$WORK/os.img" "$RSH" "$ADDR_B" "$WORK/dd.out"; }
T_EMPTY=() T_SIBL=() T_DD=() T_HALF=() T_HALFN=() T_DDS=()
for run in 1 2 3; do
	rm -rf "$STORE_C" && bh "$STORE_C" init >/dev/null
	t=$(now)
	sync_to "$STORE_C" os
	T_EMPTY+=("$(since "$t")")
	say "   run $run: blockhash sync to an empty store: ${T_EMPTY[-1]}s (wire_out $(st wire_out_bytes), blocks_sent $(st blocks_sent))"
	bh "$STORE_B" delete os --recursive >/dev/null
	t=$(now)
	sync_to "$STORE_B" os
	T_SIBL+=("$(since "$t")")
	say "   run $run: blockhash sync to B holding the sibling: ${T_SIBL[-1]}s (wire_out $(st wire_out_bytes), blocks_sent $(st blocks_sent))"
	T_HALF+=("$(sync_half lz4)")
	say "   run $run: blockhash sync to a store holding the first half: ${T_HALF[-1]}s (wire_out $(st wire_out_bytes), blocks_sent $(st blocks_sent))"
	T_HALFN+=("$(sync_half none)")
	say "   run $run: the same with --compress none: ${T_HALFN[-1]}s (wire_out $(st wire_out_bytes))"
	t=$(now)
	dd_plain
	T_DD+=("$(since "$t")")
	say "   run $run: dd if=IMAGE bs=1M | rsh B 'cat > file': ${T_DD[-1]}s"
	rm -f "$WORK/dd.out"
	t=$(now)
	dd_durable
	T_DDS+=("$(since "$t")")
	say "   run $run: dd if=IMAGE bs=1M | rsh B 'dd of=file conv=fsync': ${T_DDS[-1]}s"
	rm -f "$WORK/dd.out"
	if command -v qemu-img >/dev/null; then
		t=$(now)
		qemu-img convert -O raw "$WORK/os.img" "$WORK/qemu.out"
		say "   run $run: qemu-img convert -O raw IMAGE file (local): $(since "$t")s"
		rm -f "$WORK/qemu.out"
	else
		say "   run $run: qemu-img is not installed: no qemu-img figure"
	fi
done
# median A B C: the middle of three figures.
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
M_SIBL=$(median "${T_SIBL[@]}") M_EMPTY=$(median "${T_EMPTY[@]}") M_DD=$(median "${T_DD[@]}")
M_HALF=$(median "${T_HALF[@]}") M_HALFN=$(median "${T_HALFN[@]}") M_DDS=$(median "${T_DDS[@]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
say "   medians of the 3 runs: sync to B holding the sibling ${M_SIBL}s, holding half ${M_HALF}s (--compress none ${M_HALFN}s), to an empty store ${M_EMPTY}s; dd through the same pipe ${M_DD}s, synced ${M_DDS}s"
say "   sync/dd wall: holding the sibling $(ratio "$M_SIBL" "$M_DD"), half $(ratio "$M_HALF" "$M_DD") (none $(ratio "$M_HALFN" "$M_DD")), empty store $(ratio "$M_EMPTY" "$M_DD"); against the synced dd: sibling $(ratio "$M_SIBL" "$M_DDS"), half $(ratio "$M_HALF" "$M_DDS") (none $(ratio "$M_HALFN" "$M_DDS")), empty $(ratio "$M_EMPTY" "$M_DDS") (below 1: blockhash is faster)"

# ---- 4. the same on a link of LINK_RATE (default 1gbit) ----
# The veth above moves data at memory speed on this machine: the CPU
# (hashing, compression, the relays) is the bottleneck, not the link, and
# dd verifies nothing. Networks between hosts are slower: the A-B link is
# limited with tc's token bucket on both ends, and the receiver holds
# the sibling, half of the image (its first half as a device), or
# nothing.
LINK_RATE=${LINK_RATE:-1gbit}
if [ "$LINK_RATE" != none ] && command -v tc >/dev/null &&
	ip netns exec "$NS_A" tc qdisc add dev "$IF_A" root tbf rate "$LINK_RATE" burst 1mb latency 100ms 2>/dev/null &&
	ip netns exec "$NS_B" tc qdisc add dev "$IF_B" root tbf rate "$LINK_RATE" burst 1mb latency 100ms; then
	say "== throughput on a $LINK_RATE link (tc tbf on both ends), whole-process wall times, ${OS_GIB} GiB image"
	L_SIBL=() L_HALF=() L_EMPTY=() L_DD=()
	for run in 1 2 3; do
		bh "$STORE_B" delete os --recursive >/dev/null
		t=$(now)
		sync_to "$STORE_B" os
		L_SIBL+=("$(since "$t")")
		L_HALF+=("$(sync_half lz4)")
		rm -rf "$STORE_C" && bh "$STORE_C" init >/dev/null
		t=$(now)
		sync_to "$STORE_C" os
		L_EMPTY+=("$(since "$t")")
		t=$(now)
		dd_plain
		L_DD+=("$(since "$t")")
		rm -f "$WORK/dd.out"
		say "   run $run: sync to B holding the sibling ${L_SIBL[-1]}s, to a store holding half ${L_HALF[-1]}s, to an empty store ${L_EMPTY[-1]}s; dd | rsh cat ${L_DD[-1]}s"
	done
	M_LS=$(median "${L_SIBL[@]}") M_LH=$(median "${L_HALF[@]}") M_LE=$(median "${L_EMPTY[@]}") M_LD=$(median "${L_DD[@]}")
	say "   medians: sibling ${M_LS}s, half ${M_LH}s, empty ${M_LE}s, dd ${M_LD}s; sync/dd: sibling $(ratio "$M_LS" "$M_LD"), half $(ratio "$M_LH" "$M_LD"), empty $(ratio "$M_LE" "$M_LD") (below 1: blockhash is faster)"
	ip netns exec "$NS_A" tc qdisc del dev "$IF_A" root 2>/dev/null || true
	ip netns exec "$NS_B" tc qdisc del dev "$IF_B" root 2>/dev/null || true
else
	say "== no rate-limited link (LINK_RATE=$LINK_RATE, or tc cannot shape this veth): section 4 skipped"
fi
mkdir -p "$ROOT/.cache"
cp "$WORK/figures.txt" "$ROOT/.cache/bench-replica.txt"
echo "figures also in .cache/bench-replica.txt"
