#!/bin/bash
# bhvm-timeout: 240
# Online scrub through the daemon (issue 8): while a store-backed device is
# served, a byte of one stored block is flipped in its extent file;
# `blockhash scrub` (over the control socket) finds it and names the device
# block, a read of that block fails with an I/O error, writing its content
# again heals it, and a second scrub finds the store clean; the device then
# reads back bit-exact.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init 1M
bh_serve
dev=$(bh add s --size 64M) || fail "add"
wait_for_dev "$dev"
run dd if=/dev/urandom of="$BHVM_WORK/img" bs=1M count=16 status=none
run dd if="$BHVM_WORK/img" of="$dev" bs=1M oflag=direct conv=fsync status=none
out=$(bh scrub --rate 50) || fail "scrub of a healthy store: $out"
log "$out"
echo "$out" | grep -q "4096 blocks checked" || fail "first scrub did not check 4096 blocks: $out"

# Flip one byte of slot 10's block.
ext="$BH_STORE/blocks/extent-000000.dat"
old=$(dd if="$ext" bs=1 skip=$((10 * 4096 + 7)) count=1 status=none | od -An -tu1 | tr -d ' ')
printf "\\$(printf '%03o' $(((old + 1) % 256)))" | dd of="$ext" bs=1 seek=$((10 * 4096 + 7)) conv=notrunc status=none
json=$(bh scrub --json) && fail "scrub of a damaged store passed: $json"
echo "$json" | grep -q '"new_damaged": 1' || fail "scrub did not find the damaged block: $json"
lba=$(echo "$json" | sed -n 's/^ *"first_lba": \([0-9]*\).*/\1/p' | head -n 1)
[ -n "$lba" ] || fail "scrub did not name the device block: $json"
log "scrub names device s block $lba"
metric damaged_lba "$lba"
if dd if="$dev" of=/dev/null bs=4096 skip="$lba" count=1 iflag=direct status=none 2>/dev/null; then
	fail "the damaged block $lba reads without an I/O error"
fi
# Heal: write the same content again.
run dd if="$BHVM_WORK/img" of="$dev" bs=4096 skip="$lba" seek="$lba" count=1 oflag=direct conv=notrunc,fsync status=none
out=$(bh scrub) || fail "scrub after the heal: $out"
echo "$out" | grep -q "0 damaged in all" || fail "damage left after the heal: $out"
run cmp -n $((16 << 20)) "$BHVM_WORK/img" "$dev"
bh_stop
pass
