package ublk

import "io"

// Backend serves the I/O of one ublk device. Offsets and lengths are in
// bytes and are always multiples of 512 (the kernel's sector), whatever the
// device's logical block size. The queue calls Backend methods from worker
// goroutines, several at once, possibly for overlapping ranges: a Backend
// must be safe for concurrent use.
type Backend interface {
	io.ReaderAt // must fill p completely or return an error
	io.WriterAt
	// Flush makes every write that completed before it durable.
	Flush() error
	// Discard tells the backend the range's content is no longer needed;
	// it reads back as zeros afterwards.
	Discard(off, length int64) error
	// WriteZeroes makes the range read back as zeros.
	WriteZeroes(off, length int64) error
}

// FUAWriter is implemented by backends that can make a single write durable
// on its own (Forced Unit Access). For backends without it, a FUA write is
// served as WriteAt followed by Flush.
type FUAWriter interface {
	WriteAtFUA(p []byte, off int64) (int, error)
}

// Inliner is implemented by backends whose requests never block and take
// about as long as a memory copy (MemBackend). When ServeInline returns
// true, the queue thread serves each request itself, in arrival order,
// instead of handing it to a worker goroutine: no hand-off, no eventfd
// wakeup. A backend that may wait for a disk, a lock held across I/O or
// the network must not claim it: one slow request would stall its queue.
type Inliner interface {
	ServeInline() bool
}
