#!/bin/bash
# bhvm-timeout: 180
# blkdiscard frees space (the store's stats drop); `del` removes the device
# and releases its blocks.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
dev=$(bh add d --size 128M) || fail "add"
keep=$(bh add k --size 16M) || fail "add k"
wait_for_dev "$dev"
run dd if=/dev/urandom of="$dev" bs=1M count=32 oflag=direct status=none
run dd if=/dev/urandom of="$keep" bs=1M count=4 oflag=direct status=none
sync
u1=$(bh_stat unique_blocks)
[ "$u1" -ge $((36 * 256)) ] || fail "only $u1 blocks stored after writing 36 MiB"
run blkdiscard -o 0 -l 16M "$dev"
sync
u2=$(bh_stat unique_blocks)
log "unique blocks: $u1 before discard, $u2 after discarding 16 MiB"
[ "$u2" -eq $((u1 - 16 * 256)) ] || fail "discarding 16 MiB freed $((u1 - u2)) blocks, want $((16 * 256))"
dd if="$dev" bs=1M count=16 iflag=direct status=none | cmp - /dev/zero -n 16777216 2>/dev/null ||
	[ "$(dd if="$dev" bs=1M count=16 iflag=direct status=none | tr -d '\0' | wc -c)" -eq 0 ] || fail "discarded range does not read as zeros"
run bh del d
wait_gone "$dev"
u3=$(bh_stat unique_blocks)
[ "$u3" -eq $((4 * 256)) ] || fail "after del, $u3 blocks remain (want the other device's $((4 * 256)))"
bh list | grep -Eq '^d +device ' && fail "deleted device still listed"
run bh del --all
u4=$(bh_stat unique_blocks)
[ "$u4" -eq 0 ] || fail "after del --all, $u4 blocks remain"
bh_stop
pass
