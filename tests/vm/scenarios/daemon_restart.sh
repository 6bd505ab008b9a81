#!/bin/bash
# bhvm-timeout: 240
# mkfs.ext4, mount, write files, unmount; restart the daemon (SIGTERM: the
# device goes away cleanly and comes back); mount again; checksums match.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
dev=$(bh add fs --size 128M --logical-block-size 4096) || fail "add"
wait_for_dev "$dev"
[ "$(blockdev --getss "$dev")" = 4096 ] || fail "logical block size is not 4096"
run mkfs.ext4 -q -F "$dev"
mkdir -p /mnt/fs
run mount "$dev" /mnt/fs
run cp -a /bin /mnt/fs/
head -c 8M /dev/urandom >/mnt/fs/random.bin
(cd /mnt/fs && find . -type f -exec sha256sum {} + | sort -k2) >"$BHVM_WORK/sums"
run umount /mnt/fs
bh_stop
wait_gone "$dev"
bh_serve
wait_for_dev "$dev"
run mount "$dev" /mnt/fs
(cd /mnt/fs && find . -type f -exec sha256sum {} + | sort -k2) >"$BHVM_WORK/sums2"
run umount /mnt/fs
cmp "$BHVM_WORK/sums" "$BHVM_WORK/sums2" || fail "checksums differ after the restart"
log "$(wc -l <"$BHVM_WORK/sums") files match"
bh_stop
pass
