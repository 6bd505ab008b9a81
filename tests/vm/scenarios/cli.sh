#!/bin/bash
# bhvm-timeout: 90
# ublktest's command line around the device's life: `features` answers,
# a second `add` of a live id fails without harming the live device,
# `del` of an unknown id fails, SIGINT stops a server as cleanly as SIGTERM.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

require ublktest
run timeout 10 ublktest features
ublk_start 0 --size 32M --backend mem
head -c 1048576 /dev/urandom >"$BHVM_WORK/data"
run dd if="$BHVM_WORK/data" of=/dev/ublkb0 bs=64k oflag=direct status=none

if timeout 20 ublktest add -n 0 --size 32M --backend mem >"$BHVM_WORK/dup.out" 2>&1; then
	fail "a second 'ublktest add -n 0' succeeded while /dev/ublkb0 is live"
fi
log "duplicate add refused: $(head -n 1 "$BHVM_WORK/dup.out")"
[ -b /dev/ublkb0 ] || fail "/dev/ublkb0 gone after a refused duplicate add"
run cmp -n 1048576 /dev/ublkb0 "$BHVM_WORK/data"

if timeout 20 ublktest del -n 7 >"$BHVM_WORK/del.out" 2>&1; then
	fail "'ublktest del -n 7' of a device that does not exist succeeded"
fi
log "del of unknown id refused: $(head -n 1 "$BHVM_WORK/del.out")"

ublk_stop 0 INT
wait_gone /dev/ublkb0
wait_gone /sys/block/ublkb0
pass
