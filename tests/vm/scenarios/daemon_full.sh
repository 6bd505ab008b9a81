#!/bin/bash
# bhvm-timeout: 180
# A full store through the real driver (issue 8): the store's file system
# fills while a guest writes new data to a served device; the guest gets
# "No space left on device" (ENOSPC, not an I/O error), the daemon keeps
# serving (every write that succeeded reads back, writes of blocks already
# stored still work, a flush succeeds), and once space is freed new data is
# stored again; fsck is clean at the end.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

mnt=$BHVM_WORK/fs
mkdir -p "$mnt"
run mount -t tmpfs -o size=96m tmpfs "$mnt"
trap 'umount -l "$mnt" 2>/dev/null' EXIT
BH_STORE=$mnt/store
bh_init 1M
# Leave about 24 MiB for the store's data.
run dd if=/dev/zero of="$mnt/filler" bs=1M count=48 status=none
log "$(df -k "$mnt" | tail -n 1)"
bh_serve
dev=$(bh add a --size 256M) || fail "add"
wait_for_dev "$dev"
run dd if=/dev/urandom of="$BHVM_WORK/img" bs=1M count=64 status=none

# Write 1 MiB at a time until the store is full.
full=""
for i in $(seq 0 63); do
	if ! dd if="$BHVM_WORK/img" of="$dev" bs=1M skip="$i" seek="$i" count=1 oflag=direct conv=notrunc status=none 2>"$BHVM_WORK/dd.err"; then
		full=$i
		break
	fi
done
[ -n "$full" ] || fail "64 MiB of new data fit in a store with about 24 MiB of room"
log "write $full failed: $(cat "$BHVM_WORK/dd.err")"
grep -q "No space left on device" "$BHVM_WORK/dd.err" || fail "a full store did not reach the guest as ENOSPC: $(cat "$BHVM_WORK/dd.err")"
grep -q "Input/output error" "$BHVM_WORK/dd.err" && fail "a full store reached the guest as EIO"
metric mib_before_full "$full"
kill -0 "$BH_PID" || fail "the daemon died when the store filled"
bh status >/dev/null || fail "the daemon does not answer on a full store"
grep -q "store failed" "$BHVM_WORK/serve.log" && fail "the store failed (ErrFailed) when its file system filled: $(grep 'store failed' "$BHVM_WORK/serve.log")"

# What was written reads back; a duplicate write (blocks already stored)
# and a flush still work.
run cmp -n $((full << 20)) "$dev" "$BHVM_WORK/img"
run dd if="$BHVM_WORK/img" of="$dev" bs=1M count=2 seek=200 oflag=direct conv=notrunc,fsync status=none
run cmp -n $((2 << 20)) "$BHVM_WORK/img" <(dd if="$dev" bs=1M skip=200 count=2 iflag=direct status=none)
run sync

# Space comes back: new data is stored again.
run rm -f "$mnt/filler"
run dd if="$BHVM_WORK/img" of="$dev" bs=1M skip="$full" seek="$full" count=$((64 - full)) oflag=direct conv=notrunc,fsync status=none
run cmp -n $((64 << 20)) "$dev" "$BHVM_WORK/img"
bh_stop
out=$(bh fsck) || fail "fsck: $out"
log "$out"
bh_serve
run bh del --all
bh_stop
pass
