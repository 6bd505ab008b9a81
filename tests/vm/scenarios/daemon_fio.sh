#!/bin/bash
# bhvm-timeout: 240
# fio verify on a store-backed device: 4 KiB random writes at QD32 with
# crc32c verification on 2 queues, a verify-only read pass, then fsck.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh
# shellcheck source=SCRIPTDIR/../guest/blockhash.sh
. /bhvm/blockhash.sh

bh_init
bh_serve
dev=$(bh add v --size 256M -q 2) || fail "add"
wait_for_dev "$dev"
job="--name=v --filename=$dev --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k
 --iodepth=32 --size=64M --verify=crc32c --verify_fatal=1"
# shellcheck disable=SC2086
run fio $job
# shellcheck disable=SC2086
run fio $job --verify_only
bh_down
out=$(bh fsck) || fail "fsck: $out"
log "$out"
pass
