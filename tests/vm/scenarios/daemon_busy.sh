#!/bin/bash
# bhvm-timeout: 240
# Devices in use do not hang the daemon: `del` of a device held open
# returns at once and the control socket keeps answering; its number is
# free again once the holder lets go. SIGTERM with a mounted filesystem:
# the daemon flushes and exits, the device stays (quiesced); after the
# restart the filesystem (synced before the stop) unmounts, mounts and
# reads back the same.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve

# del while a process holds the device open
dev=$(bh add held --size 64M -n 3) || fail "add held"
wait_for_dev "$dev"
run dd if=/dev/urandom of="$dev" bs=1M count=8 oflag=direct status=none
exec 3<"$dev"
timeout 30 blockhash --store "$BH_STORE" del held || fail "del of a device held open did not return within 30 s"
timeout 10 blockhash --store "$BH_STORE" list >/dev/null || fail "the daemon stopped answering after the del"
[ "$(bh_stat unique_blocks)" = 0 ] || fail "the deleted device's blocks are still stored"
exec 3<&-
# the number comes free once the holder closed it
for _ in $(seq 50); do
	dev=$(bh add again --size 64M -n 3 2>/dev/null) && break
	sleep 0.2
done
[ "$dev" = /dev/ublkb3 ] || fail "id 3 not reusable after the holder closed the device"
wait_for_dev "$dev"
run bh del again

# SIGTERM with a filesystem mounted on a device
dev=$(bh add fs --size 128M) || fail "add fs"
wait_for_dev "$dev"
run mkfs.ext4 -q -F "$dev"
mkdir -p /mnt/busy
run mount "$dev" /mnt/busy
head -c 4194304 /dev/urandom >/mnt/busy/a.bin
run cp -a /bin /mnt/busy/
sync
(cd /mnt/busy && find . -type f -exec sha256sum {} + | sort -k2) >"$BHVM_WORK/sums"
bh_stop # fails if the daemon does not exit 0 within 90 s
[ -b "$dev" ] || fail "$dev went away on SIGTERM"
bh_serve
wait_for_dev "$dev"
# still mounted across the restart: read it back from the device
run umount /mnt/busy
echo 3 >/proc/sys/vm/drop_caches
run mount "$dev" /mnt/busy
(cd /mnt/busy && find . -type f -exec sha256sum {} + | sort -k2) >"$BHVM_WORK/sums2"
run umount /mnt/busy
cmp "$BHVM_WORK/sums" "$BHVM_WORK/sums2" || fail "files synced before SIGTERM differ after the restart"
log "$(wc -l <"$BHVM_WORK/sums") files match"
run e2fsck -f -n "$dev"
bh_down
pass
