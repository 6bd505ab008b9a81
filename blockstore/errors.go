package blockstore

import (
	"errors"
	"fmt"

	"blockhash/corrupt"
)

var (
	// ErrFull means no space is left for block data (ENOSPC while growing).
	ErrFull = errors.New("blockstore: no space left on device")
	// ErrCorrupt means stored bytes failed their checksum or are malformed.
	ErrCorrupt = corrupt.ErrCorrupt
	// ErrRange means a slot number beyond the store's capacity.
	ErrRange = errors.New("blockstore: slot out of range")
	// ErrClosed means the store was used after Close or after a failed write.
	ErrClosed = errors.New("blockstore: store is closed")
	// ErrLocked means another process holds the lock on a directory.
	ErrLocked = errors.New("blockstore: locked by another process")
)

// CorruptError names the slots whose records failed their checksum.
type CorruptError struct {
	What  string
	File  string // the file holding the first one
	Slots []Slot
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("blockstore: %s: corrupt %s in %d slot(s), first %d", e.File, e.What, len(e.Slots), e.Slots[0])
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// DamageError names a store file that is missing or has the wrong size.
// RepairExtents repairs it (the slot records it lost are then rebuilt by
// the layer above).
type DamageError struct {
	File    string // path
	Problem string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("blockstore: %s: %s (blockhash fsck --repair recreates it)", e.File, e.Problem)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *DamageError) Unwrap() error { return ErrCorrupt }
