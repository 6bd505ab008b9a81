#!/bin/bash
# bhvm-timeout: 300
# Cross-device dedup: an ext4 filesystem built on one store-backed device and
# copied with dd to a second; the store grows by less than 5% of the image's
# non-zero bytes for the second copy, and both read back bit-exact.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
d0=$(bh add fs0 --size 192M) || fail "add fs0"
d1=$(bh add fs1 --size 192M) || fail "add fs1"
[ "$d0" = /dev/ublkb0 ] && [ "$d1" = /dev/ublkb1 ] || fail "paths $d0 $d1"
wait_for_dev "$d0"
wait_for_dev "$d1"
run mkfs.ext4 -q -F "$d0"
mkdir -p /mnt/fs0
run mount "$d0" /mnt/fs0
run cp -a /bin /lib /mnt/fs0/
[ -d /lib64 ] && cp -a /lib64 /mnt/fs0/
run umount /mnt/fs0
sync
data0=$(bh stats fs0 --json | sed -n 's/^    "data_blocks": \([0-9]*\).*/\1/p' | head -n 1)
s1=$(bh_stat stored_bytes)
log "fs0 image: $data0 non-zero blocks; store holds $s1 bytes"
run dd if="$d0" of="$d1" bs=1M iflag=direct oflag=direct status=none
sync
s2=$(bh_stat stored_bytes)
growth=$((s2 - s1))
limit=$((data0 * 4096 / 20))
metric image_nonzero_bytes $((data0 * 4096))
metric second_copy_growth_bytes "$growth"
log "second copy grew the store by $growth bytes (limit $limit)"
[ "$data0" -gt 5000 ] || fail "the image has only $data0 data blocks"
[ "$growth" -lt "$limit" ] || fail "second copy grew the store by $growth bytes, limit $limit"
run cmp "$d0" "$d1"
sum0=$(sha256sum <"$d0" | cut -d' ' -f1)
bh_stop
bh_serve
sum1=$(sha256sum <"$d1" | cut -d' ' -f1)
[ "$sum0" = "$sum1" ] || fail "after a restart /dev/ublkb1 differs from the image"
bh_down
pass
