package pool

import (
	"errors"

	"blockhash/corrupt"
)

var (
	// ErrInvalid means bad input: a name, a size, a flag. Nothing changed.
	ErrInvalid = errors.New("pool: invalid argument")
	// ErrNotFound means no such device in the pool.
	ErrNotFound = errors.New("pool: no such device")
	// ErrExists means a device or store of that name exists already.
	ErrExists = errors.New("pool: exists already")
	// ErrNoStore means the pool holds no Blockhash store (run init --rados).
	ErrNoStore = errors.New("pool: no Blockhash store in the pool")
	// ErrHeld means another host serves the device and did not let go.
	ErrHeld = errors.New("pool: device held by another host")
	// ErrLost means this host lost the device's lease (handed over or
	// fenced): its I/O is refused until it takes the lease again.
	ErrLost = errors.New("pool: device lease lost")
	// ErrClosed means the pool or device is closed.
	ErrClosed = errors.New("pool: closed")
	// errEmptyHeader is a device header object of no bytes: what a
	// lock on a deleted device's header leaves (no device).
	errEmptyHeader = errors.New("pool: device header is empty (deleted device)")
	// ErrCorrupt is the project's one corruption kind.
	ErrCorrupt = corrupt.ErrCorrupt

	// errRaced means a block a write read to change part of it was
	// written meanwhile: the write reads and merges again (never
	// returned to a caller).
	errRaced = errors.New("pool: block written while a partial write merged it")
)
