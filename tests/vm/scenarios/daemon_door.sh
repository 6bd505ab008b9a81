#!/bin/bash
# bhvm-timeout: 300
# The daemon as the one door (issue 11): while it serves a device, create,
# import (file, standard input), export (a snapshot of the served device
# while its guest writes on, a device not served) and fsck go through its
# socket and do what they do offline; an import into the served device,
# an export of it (writable) and fsck --repair are refused with one line;
# an import killed mid-stream leaves no device behind and the daemon and
# its device go on.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init 4M
bh_serve
dev=$(bh add s --size 64M) || fail "add"
wait_for_dev "$dev"
run dd if=/dev/urandom of="$BHVM_WORK/img" bs=1M count=16 status=none
run dd if="$BHVM_WORK/img" of="$dev" bs=1M oflag=direct conv=fsync status=none

out=$(bh create c --size 32M 2>&1) || fail "create through the daemon: $out"
[ "$out" = "created c (32.0 MiB)" ] || fail "create printed: $out"
out=$(bh import i "$BHVM_WORK/img" 2>&1) || fail "import through the daemon: $out"
echo "$out" | grep -q "imported 16.0 MiB into i" || fail "import printed: $out"
out=$(bh import j - --size 16M <"$BHVM_WORK/img" 2>&1) || fail "import of standard input through the daemon: $out"
run bh export i "$BHVM_WORK/i.out"
run cmp "$BHVM_WORK/img" "$BHVM_WORK/i.out"
bh export j - | cmp - "$BHVM_WORK/img" || fail "export of j to standard output differs"

# The served device: refused with one line, then through a snapshot while
# the guest writes on.
out=$(bh import s "$BHVM_WORK/img" 2>&1) && fail "import into the served device passed"
echo "$out" | grep -q "del s --keep-data" || fail "import into s: $out"
out=$(bh export s "$BHVM_WORK/s.out" 2>&1) && fail "export of the served writable device passed"
echo "$out" | grep -q "export a snapshot" || fail "export of s: $out"
run bh snapshot s snap
dd if=/dev/urandom of="$dev" bs=1M seek=32 count=16 oflag=direct conv=fsync status=none &
writer=$!
run bh export s@snap "$BHVM_WORK/snap.out"
wait "$writer" || fail "the guest's writes failed during the export"
run cmp -n $((16 << 20)) "$BHVM_WORK/img" "$BHVM_WORK/snap.out"
cmp -s -i $((16 << 20)) "$BHVM_WORK/snap.out" /dev/zero -n $((48 << 20)) || fail "the snapshot's export holds the writes made after it"

out=$(bh fsck 2>&1) || fail "fsck through the daemon: $out"
echo "$out" | grep -q "store is consistent" || fail "fsck printed: $out"
out=$(bh fsck --repair 2>&1) && fail "fsck --repair passed through the daemon"
echo "$out" | grep -q "stop the daemon first" || fail "fsck --repair: $out"

# An import killed mid-stream.
mkfifo "$BHVM_WORK/fifo"
bh import k - --size 32M <"$BHVM_WORK/fifo" >/dev/null 2>&1 &
imp=$!
exec 7>"$BHVM_WORK/fifo"
dd if="$BHVM_WORK/img" bs=1M count=8 status=none >&7
kill -KILL "$imp"
wait "$imp" 2>/dev/null
exec 7>&-
_gone() { bh export k /dev/null 2>&1 | grep -q "no such device"; }
wait_for 30 _gone || fail "the killed import's device k was left behind: $(bh export k /dev/null 2>&1)"
blockhash status >/dev/null || fail "the daemon stopped answering"
run cmp -n $((16 << 20)) "$BHVM_WORK/img" "$dev"
bh_stop
out=$(bh fsck 2>&1) || fail "offline fsck: $out"
pass
