package daemon

import (
	"errors"

	"blockhash/corrupt"
)

var (
	// ErrNotRunning means no daemon listens on the socket.
	ErrNotRunning = errors.New("daemon: the blockhash daemon is not running (start it with: blockhash serve)")
	// ErrRunning means another daemon already listens on the socket.
	ErrRunning = errors.New("daemon: another blockhash daemon is running")
	// ErrNoDevices is a block device asked of a daemon that serves none
	// (NoDevices).
	ErrNoDevices = errors.New("daemon: this daemon serves no block devices")
	// ErrNotServed means no served device matches the request.
	ErrNotServed = errors.New("daemon: no such served device")
	// ErrServed means the device is already served.
	ErrServed = errors.New("daemon: device already served")
	// ErrInUse means the daemon serves the device (or one of its
	// snapshots) that a request would roll back or delete.
	ErrInUse = errors.New("daemon: device in use")
	// ErrReadOnly means a write reached a device served read-only.
	ErrReadOnly = errors.New("daemon: device served read-only")
	// ErrInvalid means a malformed request.
	ErrInvalid = errors.New("daemon: invalid request")
	// ErrForeign means a kernel device has the number of one of ours but
	// is not ours to take over or delete (another process serves it, or
	// its size differs).
	ErrForeign = errors.New("daemon: kernel device belongs to another server")
	// ErrReleased means a device's I/O was paused and the device is being
	// released (del): held requests fail with it (the guest gets EIO), as
	// do pause and resume.
	ErrReleased = errors.New("daemon: device released while its I/O was paused")
	// ErrPauseEnded means a pause did not complete: resumed, or timed out
	// waiting for the requests already in the store.
	ErrPauseEnded = errors.New("daemon: pause did not complete")
	// ErrCorrupt means the daemon's state file is damaged (the project's
	// one corruption kind).
	ErrCorrupt = corrupt.ErrCorrupt
)
