package engine

import (
	"errors"
	"fmt"

	"blockhash/corrupt"
)

var (
	// ErrCorrupt means an on-disk structure failed its checksum or is malformed
	// (the project's one corruption kind, corrupt.ErrCorrupt).
	ErrCorrupt = corrupt.ErrCorrupt
	// ErrNotFound means no device has that name.
	ErrNotFound = errors.New("engine: no such device")
	// ErrExists means a device with that name exists already.
	ErrExists = errors.New("engine: device exists")
	// ErrInvalid means a bad argument: a size, a name, an unaligned offset.
	ErrInvalid = errors.New("engine: invalid argument")
	// ErrRange means an access beyond the end of a device.
	ErrRange = errors.New("engine: beyond end of device")
	// ErrFormat means a store of another format version or hash.
	ErrFormat = errors.New("engine: unsupported store format")
	// ErrNoStore means the directory holds no store.
	ErrNoStore = errors.New("engine: no store here (run blockhash init)")
	// ErrFailed means an earlier write to the store's metadata failed; the
	// engine refuses further changes until it is reopened, which recovers
	// the last committed state.
	ErrFailed = errors.New("engine: store failed, reopen to recover")
	// ErrReadOnly means a change was asked of a store opened read-only.
	ErrReadOnly = errors.New("engine: store opened read-only")
	// ErrReplayPending means a read-only open found a commit interrupted
	// by a crash in the journal: only an open that writes replays it. It
	// is an ErrReadOnly.
	ErrReplayPending = fmt.Errorf("%w: an interrupted commit is pending", ErrReadOnly)
	// ErrBusy means the volume is in a state that refuses the operation
	// (a device with snapshots asked to be deleted without the recursive
	// option).
	ErrBusy = errors.New("engine: device busy")
	// ErrSnapshot means a write to a snapshot (snapshots are read-only).
	ErrSnapshot = errors.New("engine: snapshots are read-only")
	// ErrClosed means the engine was closed.
	ErrClosed = errors.New("engine: closed")
)
