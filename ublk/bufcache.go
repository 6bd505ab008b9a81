package ublk

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FlushBufferCache drops the kernel's cached pages of block device path
// (the BLKFLSBUF ioctl: dirty pages are written first, then the clean ones
// are dropped), so that the next reads come from the device's server.
// A server whose content changed underneath the device (a replica's map
// swapped in place) calls it: pages cached before, by udev's probing for
// instance, would otherwise be served stale. Pages pinned by a mounted
// file system stay. It needs CAP_SYS_ADMIN.
func FlushBufferCache(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("ublk: flush the buffer cache of %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("ublk: flush the buffer cache of %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return fmt.Errorf("ublk: flush the buffer cache of %s: not a block device: %w", path, unix.ENOTBLK)
	}
	if err := unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0); err != nil {
		if err == unix.EACCES || err == unix.EPERM {
			return fmt.Errorf("ublk: flush the buffer cache of %s: %w", path, ErrPermission)
		}
		return fmt.Errorf("ublk: flush the buffer cache of %s: %w", path, err)
	}
	return nil
}

// FlushBufferCache drops the kernel's cached pages of the device's
// /dev/ublkbN (FlushBufferCache).
func (d *Device) FlushBufferCache() error { return FlushBufferCache(d.BlockPath()) }
