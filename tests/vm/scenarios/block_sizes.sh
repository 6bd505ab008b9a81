#!/bin/bash
# bhvm-timeout: 180
# 512 and 4096 byte logical blocks: blockdev --getss reports them, fio verify
# passes (with 512-byte I/O on the 512 device), and a 512-byte O_DIRECT
# write is refused on the 4096 device.
# shellcheck source=SCRIPTDIR/../guest/lib.sh
. /bhvm/lib.sh

id=0
for lbs in 512 4096; do
	dev=/dev/ublkb$id
	ublk_start $id --lbs $lbs --size 128M --backend mem
	ss=$(blockdev --getss $dev)
	[ "$ss" -eq $lbs ] || fail "blockdev --getss $dev = $ss, want $lbs"
	log "lbs $lbs: getss=$ss pbsz=$(blockdev --getpbsz $dev) size=$(blockdev --getsize64 $dev)"
	[ "$(blockdev --getsize64 $dev)" -eq 134217728 ] || fail "$dev size is not 128 MiB"
	run fio --name=v$lbs --filename=$dev --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --iodepth=32 --size=32M --verify=crc32c --verify_fatal=1
	run fio --name=s$lbs --filename=$dev --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=$lbs --iodepth=16 --offset=64M --size=2M --verify=crc32c --verify_fatal=1
	if [ $lbs -eq 4096 ]; then
		if dd if=/dev/zero of=$dev bs=512 count=1 oflag=direct status=none 2>/dev/null; then
			fail "a 512-byte O_DIRECT write to a 4096-byte-block device succeeded"
		fi
	fi
	ublk_stop $id
	id=$((id + 1))
done
pass
