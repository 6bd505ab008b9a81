package ublk

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Sentinel errors. Functions of this package wrap them with %w; test with
// errors.Is.
var (
	// ErrNotLoaded: /dev/ublk-control does not exist.
	ErrNotLoaded = errors.New("ublk: /dev/ublk-control is missing: the ublk_drv kernel module is not loaded: modprobe ublk_drv")
	// ErrPermission: the kernel refused a command or open for lack of
	// privilege.
	ErrPermission = errors.New("ublk: permission denied: ublk devices need root (CAP_SYS_ADMIN)")
	// ErrUnsupported: the running kernel lacks a ublk feature this package
	// needs; the wrapping message names the feature.
	ErrUnsupported = errors.New("ublk: the kernel's ublk driver lacks a required feature")
	// ErrNoDevice: no ublk device with that id.
	ErrNoDevice = errors.New("ublk: no such ublk device")
	// ErrExists: a ublk device with that id already exists.
	ErrExists = errors.New("ublk: ublk device id already in use")
	// ErrBusy: the kernel reported the device busy (EBUSY).
	ErrBusy = errors.New("ublk: ublk device busy")
	// ErrNotRecoverable: the device cannot be taken over by Recover.
	ErrNotRecoverable = errors.New("ublk: device cannot be recovered")
	// ErrStopped: the device has been stopped.
	ErrStopped = errors.New("ublk: device stopped")
	// ErrInvalidConfig: a Config value is out of range.
	ErrInvalidConfig = errors.New("ublk: invalid configuration")
	// ErrClosed: the Control has been closed.
	ErrClosed = errors.New("ublk: control closed")
)

// CmdError is a control command the kernel failed. It unwraps to the errno
// and matches ErrPermission, ErrNoDevice, ErrExists, ErrBusy with errors.Is.
type CmdError struct {
	Cmd   string // command name, e.g. "ADD_DEV"
	DevID int    // -1 when not device-specific
	Errno unix.Errno
}

func (e *CmdError) Error() string {
	if e.DevID >= 0 {
		return fmt.Sprintf("ublk: %s on device %d: %v", e.Cmd, e.DevID, e.Errno)
	}
	return fmt.Sprintf("ublk: %s: %v", e.Cmd, e.Errno)
}

// Unwrap returns the errno.
func (e *CmdError) Unwrap() error { return e.Errno }

// Is maps errnos to the package's sentinel errors.
func (e *CmdError) Is(target error) bool {
	switch target {
	case ErrPermission:
		return e.Errno == unix.EPERM || e.Errno == unix.EACCES && e.Cmd != "SET_PARAMS"
	case ErrNoDevice:
		return e.Errno == unix.ENODEV
	case ErrExists:
		return e.Errno == unix.EEXIST
	case ErrBusy:
		return e.Errno == unix.EBUSY
	}
	return false
}

// errnoResult turns a negative CQE result into an errno.
func errnoResult(res int32) unix.Errno { return unix.Errno(-res) }
