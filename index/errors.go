package index

import (
	"errors"
	"fmt"

	"github.com/syndtr/goleveldb/leveldb"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"

	"blockhash/corrupt"
)

var (
	// ErrCorrupt means the index's files or one of its entries are damaged.
	ErrCorrupt = corrupt.ErrCorrupt
	// ErrClosed means the index was used after Close.
	ErrClosed = errors.New("index: closed")
	// ErrLocked means another process has the index open.
	ErrLocked = errors.New("index: locked by another process")
)

// translate maps goleveldb's errors to this package's.
func translate(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case lerrors.IsCorrupted(err):
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, op, err)
	case errors.Is(err, leveldb.ErrClosed):
		return fmt.Errorf("%w: %s", ErrClosed, op)
	default:
		return fmt.Errorf("index: %s: %w", op, err)
	}
}
