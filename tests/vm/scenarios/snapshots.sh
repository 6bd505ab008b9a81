#!/bin/bash
# bhvm-timeout: 180
# Snapshots, clones and rollbacks through the daemon, on the real driver.
# A mounted ext4 device is frozen (fsfreeze) and snapshotted while fio
# writes to another file of it (fio goes on after the thaw); the snapshot,
# served read-only (add DEV@SNAP --read-only), mounts (ro,noload), is clean
# for e2fsck and holds the files written before the freeze; writes to it
# fail. A clone of the snapshot and its source each read back their own
# data; rolling back or deleting a served device is refused; a rollback of
# the stopped device brings it back to the snapshot (fsck clean, files as
# they were); deleting the source (recursively) leaves the clone intact;
# deleting the clone returns the store's space.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

require fsfreeze fio mkfs.ext4 e2fsck blockdev
sums=$BHVM_WORK/sums

# check_files DIR: the files written before the snapshot read back
check_files() { (cd "$1" && sha256sum -c --quiet "$sums") || fail "files in $1 differ from before the snapshot"; }
# drop: forget cached pages, so that reads come from the devices
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# refused EXPECT CMD...: CMD fails with a one-line error that contains EXPECT
refused() {
	_want=$1
	shift
	if _out=$("$@" 2>&1); then fail "not refused: $*"; fi
	[ "$(printf '%s\n' "$_out" | wc -l)" -eq 1 ] || fail "not a one-line error from $*: $_out"
	case $_out in *"$_want"*) ;; *) fail "error of $* lacks '$_want': $_out" ;; esac
	log "refused as expected: $_out"
}

bh_init 16M
bh_serve
d0=$(bh add fs0 --size 96M) || fail "add fs0"
wait_for_dev "$d0"
run mkfs.ext4 -q -F "$d0"
mkdir -p /mnt/fs0 /mnt/snap /mnt/c1
run mount "$d0" /mnt/fs0
for i in 1 2 3; do
	run dd if=/dev/urandom of=/mnt/fs0/f$i bs=1M count=2 status=none
done
mkdir -p /mnt/fs0/dir
echo "before the snapshot" >/mnt/fs0/dir/note
(cd /mnt/fs0 && sha256sum f1 f2 f3 dir/note) >"$sums"
sync

log "fio writes to /mnt/fs0/bg; the file system is frozen and snapshotted meanwhile"
fio --name=bg --filename=/mnt/fs0/bg --rw=randwrite --bs=4k --size=8M --direct=1 --ioengine=psync \
	--time_based --runtime=12 --eta=never --output="$BHVM_WORK/fio.log" &
fio_pid=$!
sleep 3
kill -0 "$fio_pid" || fail "fio ended before the freeze: $(cat "$BHVM_WORK/fio.log")"
run fsfreeze --freeze /mnt/fs0
t0=$(date +%s)
run bh snapshot fs0 s1
t1=$(date +%s)
run fsfreeze --unfreeze /mnt/fs0
metric snapshot_seconds $((t1 - t0))
kill -0 "$fio_pid" || fail "fio ended during the freeze: $(tail -n 20 "$BHVM_WORK/fio.log")"
wait "$fio_pid" || fail "fio failed across the freeze: $(tail -n 20 "$BHVM_WORK/fio.log")"
log "fio: $(grep -m1 -E 'write: IOPS' "$BHVM_WORK/fio.log")"
echo "after the snapshot" >/mnt/fs0/dir/note
echo "fs0 only" >/mnt/fs0/fs0only
sync

log "the snapshot, served read-only"
d1=$(bh add fs0@s1 --read-only) || fail "add fs0@s1"
wait_for_dev "$d1"
[ "$(blockdev --getro "$d1")" = 1 ] || fail "$d1 is not read-only"
bh list | grep -E "fs0@s1 .* ro *$" >/dev/null || fail "list does not show fs0@s1 read-only: $(bh list)"
run e2fsck -fn "$d1"
run mount -o ro,noload "$d1" /mnt/snap
check_files /mnt/snap
[ -e /mnt/snap/fs0only ] && fail "the snapshot holds a file written after it"
run umount /mnt/snap
if dd if=/dev/zero of="$d1" bs=4k count=1 oflag=direct conv=notrunc status=none 2>"$BHVM_WORK/dd.err"; then
	fail "a write to the read-only device succeeded"
fi
log "write to $d1 refused: $(cat "$BHVM_WORK/dd.err")"

log "refusals while served"
refused "del fs0 --keep-data" bh rollback fs0 s1
refused "del fs0 --keep-data" bh delete fs0 --recursive
refused "del fs0@s1 --keep-data" bh delete fs0@s1
run bh del fs0@s1 --keep-data

log "a clone of the snapshot, served beside its source"
run bh clone fs0@s1 c1
d2=$(bh add c1) || fail "add c1"
wait_for_dev "$d2"
run mount "$d2" /mnt/c1
check_files /mnt/c1
echo "c1 only" >/mnt/c1/c1only
run dd if=/dev/urandom of=/mnt/c1/c1big bs=1M count=2 status=none
echo "c1's note" >/mnt/c1/dir/note
(cd /mnt/c1 && sha256sum c1only c1big dir/note) >"$BHVM_WORK/c1sums"
(cd /mnt/fs0 && sha256sum fs0only dir/note) >"$BHVM_WORK/fs0sums"
run umount /mnt/c1
run umount /mnt/fs0
drop
run e2fsck -fn "$d0"
run e2fsck -fn "$d2"
run mount "$d0" /mnt/fs0
run mount "$d2" /mnt/c1
(cd /mnt/fs0 && sha256sum -c --quiet "$BHVM_WORK/fs0sums") || fail "fs0 lost its own data"
(cd /mnt/c1 && sha256sum -c --quiet "$BHVM_WORK/c1sums") || fail "c1 lost its own data"
[ -e /mnt/fs0/c1only ] && fail "c1's file shows on fs0"
[ -e /mnt/c1/fs0only ] && fail "fs0's file shows on c1"
run umount /mnt/c1
run bh del c1 --keep-data

log "rollback of the stopped device"
run umount /mnt/fs0
run bh del fs0 --keep-data
run bh rollback fs0 s1
d0=$(bh add fs0) || fail "add fs0 after the rollback"
wait_for_dev "$d0"
run e2fsck -fn "$d0"
run mount "$d0" /mnt/fs0
check_files /mnt/fs0
[ -e /mnt/fs0/fs0only ] && fail "the rollback kept a file written after the snapshot"
run umount /mnt/fs0
run bh del fs0 --keep-data

log "deleting the source leaves the clone intact"
refused "recursive" bh delete fs0
run bh delete fs0 --recursive
bh stats --json | grep -q '"name": "fs0' && fail "fs0 or its snapshot is still in the store"
d2=$(bh add c1) || fail "add c1 again"
wait_for_dev "$d2"
drop
run e2fsck -fn "$d2"
run mount "$d2" /mnt/c1
(cd /mnt/c1 && sha256sum -c --quiet "$BHVM_WORK/c1sums") || fail "c1 changed when its source was deleted"
(cd /mnt/c1 && sha256sum -c --quiet <(grep -v dir/note "$sums")) || fail "c1 lost the snapshot's files when its source was deleted"
run umount /mnt/c1
run bh del c1 --keep-data

log "deleting the clone returns the space"
u1=$(bh_stat unique_blocks)
log "unique blocks before the last delete: $u1"
[ "${u1:-0}" -gt 1000 ] || fail "only ${u1:-?} unique blocks stored"
run bh delete c1
_unique_zero() { [ "$(bh_stat unique_blocks)" = 0 ]; }
wait_for 60 _unique_zero || fail "unique blocks still $(bh_stat unique_blocks) after deleting every device"
metric unique_blocks_freed "$u1"
bh_down
pass
