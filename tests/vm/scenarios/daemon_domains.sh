#!/bin/bash
# bhvm-timeout: 400
# Dedup domains on the real driver: an ext4 image copied with dd to a
# second device of its domain adds almost nothing to the store, and to a
# device of another domain stores it again; every copy reads back
# bit-exact after a daemon restart, e2fsck is clean and fsck (through the
# daemon) finds the store consistent.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
a0=$(bh add a0 --size 192M --domain tenant-a) || fail "add a0"
a1=$(bh add a1 --size 192M --domain tenant-a) || fail "add a1"
b0=$(bh add b0 --size 192M --domain tenant-b) || fail "add b0"
for d in "$a0" "$a1" "$b0"; do wait_for_dev "$d"; done
if bh add a1x --size 1M --domain "bad/name" 2>/dev/null; then fail "a bad domain name was accepted"; fi
run mkfs.ext4 -q -F "$a0"
mkdir -p /mnt/a0
run mount "$a0" /mnt/a0
run cp -a /bin /lib /mnt/a0/
run umount /mnt/a0
sync
data=$(bh stats a0 --json | sed -n 's/^    "data_blocks": \([0-9]*\).*/\1/p' | head -n 1)
bytes=$((data * 4096))
s1=$(bh_stat stored_bytes)
run dd if="$a0" of="$a1" bs=1M iflag=direct oflag=direct status=none
sync
s2=$(bh_stat stored_bytes)
run dd if="$a0" of="$b0" bs=1M iflag=direct oflag=direct status=none
sync
s3=$(bh_stat stored_bytes)
same=$((s2 - s1))
other=$((s3 - s2))
metric image_nonzero_bytes "$bytes"
metric same_domain_copy_growth_bytes "$same"
metric other_domain_copy_growth_bytes "$other"
log "image $bytes bytes of data; a copy in its domain stored $same bytes, in another domain $other"
[ "$data" -gt 5000 ] || fail "the image has only $data data blocks"
[ "$same" -lt $((bytes / 20)) ] || fail "a copy in the same domain stored $same bytes (image $bytes)"
[ "$other" -gt $((bytes * 9 / 10)) ] || fail "a copy in another domain stored only $other bytes (image $bytes): it was shared across domains"
bh stats | grep -q "tenant-b" || fail "stats shows no dedup domains"
bh list | head -n 1 | grep -q DOMAIN || fail "list has no DOMAIN column"
sum=$(sha256sum <"$a0" | cut -d' ' -f1)
bh_stop
bh_serve
for d in "$a1" "$b0"; do
	wait_for_dev "$d"
	[ "$(sha256sum <"$d" | cut -d' ' -f1)" = "$sum" ] || fail "$d differs from the image after a restart"
done
run e2fsck -fn "$b0"
bh fsck || fail "fsck"
bh_down
pass
