#!/bin/bash
# bhvm-timeout: 600
# Real /dev/ublkbN devices served from a store in a Ceph pool (issue 12):
# `blockhash serve --rados` as host vmhost, device vm1 written and checked
# by fio (crc32c verify), a daemon stop and restart that gives the same
# bytes back (sha256 of the whole device) and passes fio's verify again, a
# file system made, filled and checked on a second pool device, fsck and
# scrub through the daemon; the same fio jobs on a device of a local store
# in this run for comparison (metrics pool|store.TEST.UNIT).
# Needs a cluster the guest reaches: run by tests/ceph/vm (make rados-vm),
# which gives tests/vm/run --net and --ceph; skipped (passing) without.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

if [ -z "${BHVM_CEPH_CONF:-}" ]; then
	echo "SKIP $BHVM_SCENARIO: no Ceph cluster given (tests/vm/run --net NS:TAP:CIDR --ceph CONF; make rados-vm)"
	pass
fi
require blockhash-rados blockhash fio sha256sum mkfs.ext4 e2fsck
POOL=${BHVM_CEPH_POOL:-bh}
RNS=${BHVM_CEPH_NS:-vm-$(date +%s)}
R=(--rados "$POOL" --ceph-conf "$BHVM_CEPH_CONF" --rados-namespace "$RNS")
secs=${BHVM_SPEED_SECS:-3}
# phase NAME: how long the scenario has run (the run's time goes where)
phase() { log "[${SECONDS}s] $*"; }

# pool_serve: the pool daemon on the default socket (so that `blockhash
# fsck`, `scrub`, `list` go to it), its pid in BH_PID (bh_stop, cleanup)
pool_serve() {
	log "+ blockhash-rados serve ${R[*]} --host vmhost"
	blockhash-rados serve "${R[@]}" --host vmhost >>"$BHVM_WORK/serve.log" 2>&1 &
	BH_PID=$!
	wait_for 120 _bh_ready || fail "pool daemon not ready within 120s: $(tail -n 20 "$BHVM_WORK/serve.log")"
	log "pool daemon ready (pid $BH_PID)"
}
# pool_row NAME: NAME's row of the offline list (another client of the pool)
pool_row() { blockhash-rados list "${R[@]}" | awk -v n="$1" '$1 == n'; }
sha_of() { sha256sum "$1" | cut -d' ' -f1; }
# ms: milliseconds of the clock (busybox date has no %N)
ms() {
	local t=${EPOCHREALTIME/./}
	echo $((t / 1000))
}

phase "init and serve"
run blockhash-rados init "${R[@]}"
pool_serve
pdev=$(blockhash add vm1 --size 256M -q 2) || fail "add vm1"
wait_for_dev "$pdev" 30
log "vm1 is $pdev"
row=$(pool_row vm1)
log "offline list: $row"
[ "$(awk '{print $(NF - 2)}' <<<"$row")" = vmhost ] || fail "the pool does not show vm1 held by vmhost: $row"
blockhash list | tee "$BHVM_WORK/list" | sed 's/^/  /'
awk -v p="$pdev" '$1 == "vm1" && $(NF - 2) == "vmhost" && $(NF - 1) == "running" && $NF == p {f = 1} END {exit !f}' "$BHVM_WORK/list" ||
	fail "the daemon's list does not show vm1 served as $pdev by vmhost"

# The same jobs on a device of a local store, served by a second daemon.
LSOCK=$BHVM_WORK/local.sock
lbh() { blockhash --store "$BHVM_WORK/store" --socket "$LSOCK" "$@"; }
run lbh init --extent-size 64M
# the binary itself, not lbh: $! must be the daemon's pid
blockhash --store "$BHVM_WORK/store" --socket "$LSOCK" serve >>"$BHVM_WORK/local.log" 2>&1 &
LPID=$!
wait_for 60 lbh status >/dev/null || fail "local daemon not ready: $(tail -n 20 "$BHVM_WORK/local.log")"
sdev=$(lbh add loc --size 256M -q 2) || fail "add loc"
wait_for_dev "$sdev"

phase "speed: pool device against local store device"
# Speed (reported, not asserted): unique data (fio's random buffers), so
# every block written is stored; the order of the devices alternates.
devs="pool=$pdev store=$sdev"
fio_args=(--ioengine=io_uring --direct=1 --size=64M)
speed_compare seqwrite1m MiBps 48 "$devs" "${fio_args[@]}" --rw=write --bs=1M --iodepth=8 --refill_buffers
speed_compare seqread1m MiBps 7 "$devs" "${fio_args[@]}" --rw=read --bs=1M --iodepth=8 --time_based --runtime="$secs"
speed_compare randwrite4k iops 49 "$devs" "${fio_args[@]}" --rw=randwrite --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs" --refill_buffers
speed_compare randread4k iops 8 "$devs" "${fio_args[@]}" --rw=randread --bs=4k --iodepth=32 --numjobs=2 --time_based --runtime="$secs"
run lbh del --all --keep-data
kill -TERM "$LPID"
wait "$LPID" || fail "local daemon exited with $? after SIGTERM: $(tail -n 20 "$BHVM_WORK/local.log")"

phase "fio verify"
# fio verify on the pool device: 4 KiB random writes at QD32 with crc32c
# on 2 queues, then a verify-only pass.
# (from 4 MiB on: the hand-over below has this host's peer write the first MiB)
job=(--name=v --filename="$pdev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k
	--iodepth=32 --offset=4M --size=32M --verify=crc32c --verify_fatal=1 --eta=never)
run fio "${job[@]}" --output=/dev/null
run fio "${job[@]}" --verify_only --output=/dev/null
before=$(sha_of "$pdev")
log "sha256 of vm1 before the restart: $before"

phase "stop, serve again, read back"
# Stop: devices flushed and removed, leases let go (the pool shows vm1
# held by no host), then serve again and add vm1: the same bytes.
bh_stop
wait_gone "$pdev" 30
row=$(pool_row vm1)
log "offline list after the stop: $row"
[ "$(awk '{print $(NF - 2)}' <<<"$row")" = - ] || fail "vm1 still held after the daemon stopped: $row"
t=$(ms)
pool_serve
pdev=$(blockhash add vm1 -q 2) || fail "add vm1 after the restart"
wait_for_dev "$pdev" 30
metric restart_serve_add_ms $(($(ms) - t))
after=$(sha_of "$pdev")
log "sha256 of vm1 after the restart:  $after"
[ "$before" = "$after" ] || fail "vm1 reads back different bytes after the restart: $before != $after"
run fio "${job[@]}" --verify_only --output=/dev/null

# Hand-over (tests/ceph/vm sets BHVM_CEPH_HANDOVER): at the line below, a
# daemon on the host (host "hostside") imports 1 MiB into vm1 while this
# daemon serves it: its first write asks this host to hand vm1 over
# (flush, let go), and it lets go when done. Meanwhile vm1 here is
# passive: reads come from the pool's copy, so the host's bytes show;
# the next write here takes vm1 back, with everything both hosts wrote.
if [ -n "${BHVM_CEPH_HANDOVER:-}" ]; then
	phase "hand-over to the host and back"
	yes HANDOVER-FROM-HOST | head -c 1048576 >"$BHVM_WORK/host.img"
	want=$(sha_of "$BHVM_WORK/host.img")
	holder() { pool_row vm1 | awk '{print $(NF - 2)}'; }
	first_mib() { dd if="$pdev" bs=1M count=1 iflag=direct status=none | sha256sum | cut -d' ' -f1; }
	_host_done() { [ "$(first_mib)" = "$want" ] && [ "$(holder)" = - ]; }
	echo "BHVM HANDOVER READY"
	# (a deadline of its own: one poll, a librados client, takes a second)
	deadline=$((SECONDS + 240))
	until _host_done; do
		[ $SECONDS -lt $deadline ] || fail "the host's write to vm1 did not show here within 240s, or vm1 stayed held (holder: $(holder))"
		sleep 0.5
	done
	log "the host's 1 MiB reads back here; vm1 is held by no host"
	t=$(ms)
	run dd if=/dev/urandom of="$pdev" bs=4k count=1 seek=512 oflag=direct status=none
	metric takeback_write_ms $(($(ms) - t))
	[ "$(holder)" = vmhost ] || fail "vm1 not held by vmhost after a write here: $(holder)"
	[ "$(first_mib)" = "$want" ] || fail "the host's 1 MiB changed when this host took vm1 back"
	run fio "${job[@]}" --verify_only --output=/dev/null
	log "sha256 of vm1 at the end: $(sha_of "$pdev")"
fi

phase "ext4"
# A file system on a second pool device: made, filled, checked, and the
# files compared after a remount. On 256 MiB mkfs.ext4 picks 1 KiB
# blocks: the kernel writes sectors of one 4 KiB block at once (the pool
# merges each into its block; once it undid the others).
fdev=$(blockhash add vm2 --size 256M -q 2) || fail "add vm2"
wait_for_dev "$fdev" 30
run mkfs.ext4 -q -F "$fdev"
mkdir -p /mnt/vm2
run mount "$fdev" /mnt/vm2
run dd if=/dev/urandom of="$BHVM_WORK/blob" bs=1M count=48 status=none
run cp "$BHVM_WORK/blob" /mnt/vm2/blob
run cp -r /bhvm /mnt/vm2/bhvm
run umount /mnt/vm2
run e2fsck -fn "$fdev"
run mount -o ro "$fdev" /mnt/vm2
run cmp "$BHVM_WORK/blob" /mnt/vm2/blob
run diff -r /bhvm /mnt/vm2/bhvm
run umount /mnt/vm2

phase "fsck and scrub"
# Through the daemon: the whole pool checked and every stored block read.
out=$(blockhash fsck) || fail "fsck through the daemon: $out"
log "fsck: $out"
grep -q 'pool is consistent' <<<"$out" || fail "fsck did not say the pool is consistent: $out"
out=$(blockhash scrub) || fail "scrub through the daemon: $out"
log "scrub: $out"
grep -q '^scrubbed [1-9]' <<<"$out" || fail "scrub read no block: $out"
blockhash stats | sed 's/^/  /'
run blockhash del --all --keep-data
bh_stop
phase "done"
pass
