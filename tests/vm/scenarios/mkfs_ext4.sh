#!/bin/bash
# bhvm-timeout: 180
# mkfs.ext4 on /dev/ublkb0, write files, record sha256sums, unmount, fsck,
# mount again and compare; then restart the server on the same backing file
# (file backend on tmpfs) and compare once more.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

img=/tmp/ext4.img
truncate -s 256M "$img"
ublk_start 0 --size 256M --backend "file=$img"
run mkfs.ext4 -F -q /dev/ublkb0
mkdir -p /mnt/a
run mount -t ext4 /dev/ublkb0 /mnt/a
mkdir -p /mnt/a/dir/sub
i=1
while [ $i -le 20 ]; do
	head -c $((i * 37 * 1024 + i)) /dev/urandom >/mnt/a/dir/small$i
	i=$((i + 1))
done
run dd if=/dev/urandom of=/mnt/a/big bs=1M count=48 status=none
echo hello >/mnt/a/dir/sub/hello.txt
(cd /mnt/a && find . -type f | sort | xargs sha256sum) >"$BHVM_WORK/sums"
log "$(wc -l <"$BHVM_WORK/sums") files checksummed"
run umount /mnt/a
run e2fsck -fn /dev/ublkb0
run blockdev --flushbufs /dev/ublkb0
echo 3 >/proc/sys/vm/drop_caches

run mount -t ext4 /dev/ublkb0 /mnt/a
(cd /mnt/a && sha256sum -c --quiet "$BHVM_WORK/sums") || fail "checksums differ after remount"
run umount /mnt/a
ublk_stop 0
wait_gone /dev/ublkb0

log "new server on the same backing file"
ublk_start 0 --size 256M --backend "file=$img"
run e2fsck -fn /dev/ublkb0
run mount -t ext4 /dev/ublkb0 /mnt/a
(cd /mnt/a && sha256sum -c --quiet "$BHVM_WORK/sums") || fail "checksums differ after a server restart"
run umount /mnt/a
ublk_stop 0
pass
