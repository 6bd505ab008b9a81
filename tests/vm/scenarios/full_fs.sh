#!/bin/bash
# bhvm-timeout: 120
# A store on a full file system can still be read and can free its own
# space: on a 48 MiB tmpfs filled to the last byte, stats, list, export and
# fsck open the store read-only and change no file; delete and fsck
# --repair release the store's reserve; the freed slots take new data; the
# reserve comes back once there is room; an import that fills the file
# system takes its new device away again. (The Go test TestFullFileSystem
# does the same on the host when run as root.)
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

require blockhash
mnt=$BHVM_WORK/fs
mkdir -p "$mnt"
run mount -t tmpfs -o size=48m tmpfs "$mnt"
trap 'umount -l "$mnt" 2>/dev/null' EXIT
BH_STORE=$mnt/store
bh_init 1M
rnd() { dd if=/dev/urandom of="$BHVM_WORK/$1" bs=1M count="$2" status=none || fail "dd $1"; }
rnd d.img 3
rnd e.img 1
rnd f.img 2
run bh import d "$BHVM_WORK/d.img"
run bh import e "$BHVM_WORK/e.img"
dd if=/dev/zero of="$mnt/filler" bs=64k 2>/dev/null
dd if=/dev/zero of="$mnt/filler" bs=4k oflag=append conv=notrunc 2>/dev/null
log "$(df "$mnt" | tail -n 1)"

snap() { (cd "$BH_STORE" && find . -type f -exec stat -c '%n %s %Y.%y' {} + | sort); }
before=$(snap)
[ -n "$before" ] || fail "cannot list the store's files"
run bh stats
run bh list
run bh fsck
run bh export d "$BHVM_WORK/d.out"
[ "$(snap)" = "$before" ] || fail "read-only commands changed the store"
run cmp "$BHVM_WORK/d.img" "$BHVM_WORK/d.out"

run bh delete d
run bh import f "$BHVM_WORK/f.img"
run bh fsck --repair
out=$(bh fsck) || fail "fsck: $out"

run rm "$mnt/filler"
run bh create g --size 1M
[ "$(stat -c %s "$BH_STORE/reserve")" -ge 16777216 ] || fail "the reserve did not come back"

rnd big.img 40
if bh import big "$BHVM_WORK/big.img" >"$BHVM_WORK/big.out" 2>&1; then
	fail "an import larger than the file system succeeded"
fi
grep -q "deleted again" "$BHVM_WORK/big.out" || fail "the failed import did not delete its device: $(cat "$BHVM_WORK/big.out")"
bh list | grep -q '^big ' && fail "the failed import left device big behind"
out=$(bh fsck) || fail "fsck after the failed import: $out"

pass
