#!/bin/bash
# bhvm-timeout: 120
# Smoke test of the VM itself: ublk driver loaded, tools present, fio runs.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

test -c /dev/ublk-control || fail "/dev/ublk-control missing (ublk_drv not loaded?)"
grep -qw ublk_drv /proc/modules || fail "ublk_drv not in /proc/modules"
require fio mkfs.ext4 e2fsck blkdiscard losetup blockdev sha256sum dd
for b in ublktest blockhash; do command -v $b >/dev/null && log "Go binary present: $b"; done
for d in /dev/vd?; do [ -b "$d" ] && log "disk $d: $(blockdev --getsize64 "$d") bytes"; done

fio_terse --name=smoke --filename=/tmp/fio.dat --size=32M --rw=randwrite --bs=4k \
	--iodepth=32 --ioengine=io_uring --runtime=3 --time_based
metric tmpfs.randwrite4k.iops "$(fio_field 49)"
pass
