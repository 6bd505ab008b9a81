#!/bin/bash
# bhvm-timeout: 180
# The daemon takes over or deletes only kernel devices that are its own.
# After a clean stop, the remembered /dev/ublkb4 is removed and another
# ublk server (ublktest, memory-backed, same size) serves number 4; the
# next `serve` leaves that device alone (no recovery, no delete: its data
# and its server stay fine), logs an error and lists its own device as
# stopped; once the other server is gone, `recover -n 4` serves it again
# with its data.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
dev=$(bh add v --size 64M -n 4) || fail "add"
[ "$dev" = /dev/ublkb4 ] || fail "add gave $dev"
wait_for_dev "$dev"
head -c 4194304 /dev/urandom >"$BHVM_WORK/ours"
run dd if="$BHVM_WORK/ours" of="$dev" bs=1M oflag=direct status=none
bh_stop
[ -b "$dev" ] || fail "$dev went away on a plain stop"
run timeout 30 ublktest del -n 4
wait_gone "$dev"

ublk_start 4 --size 64M --backend mem
head -c 4194304 /dev/urandom >"$BHVM_WORK/theirs"
run dd if="$BHVM_WORK/theirs" of=/dev/ublkb4 bs=1M oflag=direct status=none
n0=$(wc -l <"$BHVM_WORK/serve.log")
bh_serve
tail -n +"$((n0 + 1))" "$BHVM_WORK/serve.log" | grep -q "served by process $(ublk_pid 4)" ||
	fail "no error about the foreign device: $(tail -n 10 "$BHVM_WORK/serve.log")"
state=$(bh_served v state)
[ "$state" = stopped ] || fail "our device is listed as '$state', not stopped"
kill -0 "$(ublk_pid 4)" || fail "the other server died"
run cmp -n 4194304 /dev/ublkb4 "$BHVM_WORK/theirs"
run fio --name=theirs --filename=/dev/ublkb4 --ioengine=io_uring --direct=1 --rw=randwrite \
	--bs=4k --iodepth=8 --size=8M --offset=8M --verify=crc32c --verify_fatal=1
if out=$(bh recover -n 4 2>&1); then
	fail "recover onto the other server's device succeeded: $out"
fi
log "recover refused: $out"
ublk_stop 4 # exits 0: its device was never touched
wait_gone /dev/ublkb4

run bh recover -n 4
wait_for_dev "$dev"
run cmp -n 4194304 "$dev" "$BHVM_WORK/ours"
bh_down
wait_gone "$dev"
pass
