#!/bin/bash
# bhvm-timeout: 120
# blkdiscard reaches the backend's Discard, fsync/sync reach Flush, O_DIRECT
# + O_DSYNC writes arrive flagged FUA; BLKZEROOUT reads back as zeros.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

st=$BHVM_WORK/stats
ublk_start 0 --size 128M --backend mem --stats "$st"
q=/sys/block/ublkb0/queue
log "queue: discard_max_bytes=$(cat $q/discard_max_bytes) write_zeroes_max_bytes=$(cat $q/write_zeroes_max_bytes) write_cache=$(cat $q/write_cache) fua=$(cat $q/fua)"

# discard
stats_settle
d0=$(stat_get "$st" discards)
run blkdiscard -o 1048576 -l 4194304 /dev/ublkb0
run blkdiscard /dev/ublkb0
stats_settle
d1=$(stat_get "$st" discards)
log "discards $d0 -> $d1"
[ "$d1" -gt "$d0" ] || fail "blkdiscard did not reach the server's Discard (discards $d0 -> $d1)"

# flush
f0=$(stat_get "$st" flushes)
run fio --name=fsync --filename=/dev/ublkb0 --ioengine=psync --rw=write --bs=4k --size=1M --fsync=16
run dd if=/dev/urandom of=/dev/ublkb0 bs=64k count=16 conv=fsync status=none
sync
stats_settle
f1=$(stat_get "$st" flushes)
log "flushes $f0 -> $f1"
[ "$f1" -gt "$f0" ] || fail "fsync did not reach the server's Flush (flushes $f0 -> $f1; write_cache=$(cat $q/write_cache))"

# FUA
u0=$(stat_get "$st" fua_writes)
run dd if=/dev/urandom of=/dev/ublkb0 bs=4k count=64 oflag=direct,dsync status=none
run fio --name=fua --filename=/dev/ublkb0 --ioengine=psync --direct=1 --sync=1 --rw=randwrite --bs=4k --size=2M --number_ios=64
stats_settle
u1=$(stat_get "$st" fua_writes)
log "fua_writes $u0 -> $u1"
[ "$u1" -ge $((u0 + 128)) ] || fail "O_DIRECT|O_DSYNC writes did not arrive flagged FUA (fua_writes $u0 -> $u1, want +128; queue/fua=$(cat $q/fua))"

# write zeroes (BLKZEROOUT): must read back as zeros whatever the path
run dd if=/dev/urandom of=/dev/ublkb0 bs=1M count=4 oflag=direct status=none
z0=$(stat_get "$st" write_zeroes)
run blkdiscard -z -o 0 -l 4194304 /dev/ublkb0
stats_settle
log "write_zeroes $z0 -> $(stat_get "$st" write_zeroes)"
head -c 4194304 /dev/zero >"$BHVM_WORK/zero"
run cmp -n 4194304 /dev/ublkb0 "$BHVM_WORK/zero"
ublk_stop 0
pass
