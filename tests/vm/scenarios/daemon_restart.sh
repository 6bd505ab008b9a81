#!/bin/bash
# bhvm-timeout: 240
# Restarts that a guest rides through. ext4 on a store device stays mounted
# across a plain restart (SIGTERM: the daemon drains and flushes, the
# kernel device stays, quiesced; the next serve recovers it): a copy
# started while no daemon runs waits and completes, and every file reads
# back. With `serve --stop-devices-on-exit` the device goes away on SIGTERM
# and comes back, data intact, at the next serve.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

sums() { (cd /mnt/fs && find . -type f -exec sha256sum {} + | sort -k2); }

bh_init
bh_serve
dev=$(bh add fs --size 128M --logical-block-size 4096) || fail "add"
wait_for_dev "$dev"
[ "$(blockdev --getss "$dev")" = 4096 ] || fail "logical block size is not 4096"
run mkfs.ext4 -q -F "$dev"
mkdir -p /mnt/fs
run mount "$dev" /mnt/fs
run cp -a /bin /mnt/fs/
head -c 8388608 /dev/urandom >/mnt/fs/random.bin
run sync

log "plain restart with the file system mounted"
bh_stop
[ -b "$dev" ] || fail "$dev went away on a plain stop"
grep -q " /mnt/fs " /proc/mounts || fail "/mnt/fs no longer mounted"
head -c 8388608 /dev/urandom >"$BHVM_WORK/late.bin"
# written while no daemon runs: sync waits for the next one
(cp "$BHVM_WORK/late.bin" /mnt/fs/late.bin && sync) >"$BHVM_WORK/late.log" 2>&1 &
late=$!
sleep 2
kill -0 $late 2>/dev/null || log "the copy finished before the daemon came back (page cache)"
bh_serve
grep -q "recovered device" "$BHVM_WORK/serve.log" || fail "the daemon did not recover the device: $(tail -n 10 "$BHVM_WORK/serve.log")"
wait_for 60 _dead $late || fail "copy still waiting 60 s after the daemon came back"
wait $late || fail "copy across the restart failed: $(cat "$BHVM_WORK/late.log")"
sums >"$BHVM_WORK/sums"
run cmp /mnt/fs/late.bin "$BHVM_WORK/late.bin"
run umount /mnt/fs
echo 3 >/proc/sys/vm/drop_caches
run mount "$dev" /mnt/fs
sums >"$BHVM_WORK/sums2"
cmp "$BHVM_WORK/sums" "$BHVM_WORK/sums2" || fail "checksums differ after a remount"
run umount /mnt/fs
run e2fsck -f -n "$dev"
log "$(wc -l <"$BHVM_WORK/sums") files match"

log "restart with --stop-devices-on-exit"
bh_stop
bh_serve_opts=--stop-devices-on-exit bh_serve
bh_stop
wait_gone "$dev"
bh_serve
wait_for_dev "$dev"
run mount "$dev" /mnt/fs
sums >"$BHVM_WORK/sums3"
run umount /mnt/fs
cmp "$BHVM_WORK/sums" "$BHVM_WORK/sums3" || fail "checksums differ after a restart that removed the device"
bh_down
wait_gone "$dev"
pass
