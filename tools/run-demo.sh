#!/usr/bin/env bash
# bhvm-timeout: 300
# `make run`: the Blockhash daemon on a default store (.cache/run/store),
# one device with a sample VM image written to it, its stats, and what to do
# next. On a host without the ublk driver (modprobe ublk_drv fails) the same
# demonstration runs inside the test VM (tests/vm/run), where the daemon is
# stopped again at the end. tests/vm/scenarios/make_run.sh links here, so
# the VM suite (make test) runs it too.
set -euo pipefail

if [[ -n ${BHVM_SCENARIO:-} ]]; then # inside the test VM
	in_vm=1 bh=blockhash dir=$BHVM_WORK/run extent=64M
else
	in_vm=0 root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	bh=$root/bin/blockhash dir=$root/.cache/run extent=256M
fi
store=$dir/store sock=$dir/blockhash.sock
say() { printf '\n== %s\n' "$*"; }
bh() { "$bh" --store "$store" --socket "$sock" "$@"; }

if [[ ! -e /dev/ublk-control && $(id -u) == 0 ]]; then
	modprobe ublk_drv 2>/dev/null || true
fi
if [[ ! -e /dev/ublk-control ]]; then
	if [[ $in_vm == 1 ]]; then
		echo "BHVM FAILMSG /dev/ublk-control missing in the test VM"
		exit 1
	fi
	cat <<EOF
This host has no ublk driver: /dev/ublk-control is missing and
'modprobe ublk_drv' did not load it (the kernel needs CONFIG_BLK_DEV_UBLK).
Running the same demonstration inside the test VM instead: a Debian 6.12
kernel with ublk_drv under QEMU (tests/vm/run; the first run downloads it).
EOF
	exec "$root/tests/vm/run" --show --script "${BASH_SOURCE[0]}"
fi
if [[ $(id -u) != 0 ]]; then
	echo "make run: ublk devices are created through /dev/ublk-control, which needs root" >&2
	exit 1
fi

mkdir -p "$dir"
[[ -e $store/superblock ]] || bh init --extent-size "$extent"

if bh status >/dev/null 2>&1; then
	say "the daemon already runs on $sock"
else
	say "blockhash serve (log: $dir/serve.log)"
	# SIGHUP ignored (as nohup does; the test VM has no nohup), so the
	# daemon outlives the terminal; exec keeps $! the daemon's pid.
	(
		trap '' HUP
		exec "$bh" --store "$store" --socket "$sock" serve >>"$dir/serve.log" 2>&1
	) &
	pid=$!
	echo "$pid" >"$dir/serve.pid"
	for _ in $(seq 300); do
		bh status >/dev/null 2>&1 && break
		kill -0 "$pid" 2>/dev/null || {
			tail -n 20 "$dir/serve.log"
			exit 1
		}
		sleep 0.1
	done
	bh status
fi

# The device: served already (restored by the daemon) or added now.
dev=$(bh list | awk '$1 == "demo" { for (i = 2; i <= NF; i++) if ($i ~ /^\/dev\/ublkb/) print $i }')
if [[ -z $dev ]]; then
	say "blockhash add demo --size 1G"
	dev=$(bh add demo --size 1G)
	echo "$dev"
	for _ in $(seq 100); do [[ -b $dev ]] && break || sleep 0.1; done
	say "writing a sample 256 MiB VM image to $dev"
	img=$dir/sample.img
	[[ -e $img ]] || bh sample --size 256M "$img"
	dd if="$img" of="$dev" bs=1M oflag=direct status=none
	sync
fi

say "blockhash list"
bh list
say "blockhash stats demo"
bh stats demo

if [[ $in_vm == 1 ]]; then
	say "removing the device (data kept), stopping the daemon (SIGTERM)"
	bh del --all --keep-data
	kill -TERM "$pid"
	wait "$pid"
	echo "daemon exited with $?"
	exit 0
fi
cat <<EOF

== next
$dev is a deduplicated disk served from $store.
  attach it to a VM:   qemu-system-x86_64 -m 2G -enable-kvm -drive file=$dev,format=raw,if=virtio ...
  benchmark it:        FIO_DEV=$dev fio tests/fio/quick.fio
  watch the savings:   $bh --store $store --socket $sock stats
  remove the device:   $bh --store $store --socket $sock del demo
  stop the daemon:     kill $(cat "$dir/serve.pid" 2>/dev/null || echo PID)   (flushes; $dev stays, its I/O waiting, and the next 'make run' takes it over)
EOF
