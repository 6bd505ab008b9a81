package daemon

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"blockhash/blockstore"
	"blockhash/engine"
	"blockhash/ublk"
)

// storeDevice is what a guestBackend serves from: an engine.Device (or a
// fake in tests).
type storeDevice interface {
	ublk.Backend
	ublk.FUAWriter
}

// guestBackend is the ublk backend of one served device: the store device
// with its errors turned into errnos a guest understands. A full store is
// ENOSPC (the guest's file system reports "no space left" instead of an
// I/O error); damaged data and every other failure are EIO. Each failure
// is logged at error level with the device, offset, LBA and length, at
// most errBurst lines per errWindow per device (the next line logged
// says how many were left out); successes are never logged. A device
// served read-only refuses writes, discards and zeroing with EROFS before
// they reach the store (the kernel device is read-only too, so only a
// write that gets past the kernel's check comes here). Every request
// passes the device's gate (gate.go), which holds them while a
// migration's switch-over pauses the device.
type guestBackend struct {
	dev      storeDevice
	gate     *gate
	name     string
	lbs      int64
	readOnly bool
	log      zerolog.Logger
	lim      logLimiter
}

var _ ublk.FUAWriter = (*guestBackend)(nil)

// newGuestBackend serves dev through gate g (nil: a gate of its own).
func newGuestBackend(dev storeDevice, g *gate, name string, lbs int, readOnly bool, log zerolog.Logger) *guestBackend {
	if lbs <= 0 {
		lbs = 512
	}
	if g == nil {
		g = &gate{}
	}
	return &guestBackend{dev: dev, gate: g, name: name, lbs: int64(lbs), readOnly: readOnly, log: log,
		lim: logLimiter{burst: errBurst, window: errWindow}}
}

const (
	errBurst  = 10
	errWindow = 10 * time.Second
)

// ReadAt implements ublk.Backend.
func (b *guestBackend) ReadAt(p []byte, off int64) (int, error) {
	if err := b.gate.enter(); err != nil {
		return 0, b.fail("read", off, int64(len(p)), err)
	}
	defer b.gate.exit()
	n, err := b.dev.ReadAt(p, off)
	if err != nil {
		return n, b.fail("read", off, int64(len(p)), err)
	}
	return n, nil
}

// WriteAt implements ublk.Backend.
func (b *guestBackend) WriteAt(p []byte, off int64) (int, error) {
	if err := b.gate.enter(); err != nil {
		return 0, b.fail("write", off, int64(len(p)), err)
	}
	defer b.gate.exit()
	if b.readOnly {
		return 0, b.fail("write", off, int64(len(p)), ErrReadOnly)
	}
	n, err := b.dev.WriteAt(p, off)
	if err != nil {
		return n, b.fail("write", off, int64(len(p)), err)
	}
	return n, nil
}

// WriteAtFUA implements ublk.FUAWriter.
func (b *guestBackend) WriteAtFUA(p []byte, off int64) (int, error) {
	if err := b.gate.enter(); err != nil {
		return 0, b.fail("write fua", off, int64(len(p)), err)
	}
	defer b.gate.exit()
	if b.readOnly {
		return 0, b.fail("write fua", off, int64(len(p)), ErrReadOnly)
	}
	n, err := b.dev.WriteAtFUA(p, off)
	if err != nil {
		return n, b.fail("write fua", off, int64(len(p)), err)
	}
	return n, nil
}

// Flush implements ublk.Backend.
func (b *guestBackend) Flush() error {
	if err := b.gate.enter(); err != nil {
		return b.fail("flush", 0, 0, err)
	}
	defer b.gate.exit()
	if err := b.dev.Flush(); err != nil {
		return b.fail("flush", 0, 0, err)
	}
	return nil
}

// Discard implements ublk.Backend.
func (b *guestBackend) Discard(off, length int64) error {
	if err := b.gate.enter(); err != nil {
		return b.fail("discard", off, length, err)
	}
	defer b.gate.exit()
	if b.readOnly {
		return b.fail("discard", off, length, ErrReadOnly)
	}
	if err := b.dev.Discard(off, length); err != nil {
		return b.fail("discard", off, length, err)
	}
	return nil
}

// WriteZeroes implements ublk.Backend.
func (b *guestBackend) WriteZeroes(off, length int64) error {
	if err := b.gate.enter(); err != nil {
		return b.fail("write zeroes", off, length, err)
	}
	defer b.gate.exit()
	if b.readOnly {
		return b.fail("write zeroes", off, length, ErrReadOnly)
	}
	if err := b.dev.WriteZeroes(off, length); err != nil {
		return b.fail("write zeroes", off, length, err)
	}
	return nil
}

// fail logs err (rate-limited) and returns the errno the guest gets.
func (b *guestBackend) fail(op string, off, length int64, err error) error {
	errno, what := guestErrno(err)
	if ok, skipped := b.lim.allow(time.Now()); ok {
		ev := b.log.Error().Str("device", b.name).Str("op", op).Int64("offset", off).
			Int64("lba", off/b.lbs).Int64("length", length).Str("guest_error", errno.Error()).Err(err)
		if skipped > 0 {
			ev = ev.Int("errors_not_logged", skipped)
		}
		ev.Msg(what)
	}
	return errno
}

// guestErrno maps a store error to the errno the guest gets, and says
// what happened.
func guestErrno(err error) (syscall.Errno, string) {
	switch {
	case errors.Is(err, blockstore.ErrFull):
		return syscall.ENOSPC, "store full: the guest gets no-space errors until space is freed"
	case errors.Is(err, ErrReadOnly), errors.Is(err, engine.ErrSnapshot), errors.Is(err, engine.ErrReadOnly):
		return syscall.EROFS, "write to a read-only device: the guest gets a read-only error"
	case errors.Is(err, engine.ErrCorrupt), errors.Is(err, blockstore.ErrCorrupt):
		return syscall.EIO, "damaged data: the guest gets an I/O error (run blockhash fsck)"
	}
	return syscall.EIO, "store error: the guest gets an I/O error"
}

// logLimiter lets at most burst events through per window and counts the
// others.
type logLimiter struct {
	burst  int
	window time.Duration

	mu      sync.Mutex // guards start, n, skipped
	start   time.Time
	n       int
	skipped int
}

// allow tells whether an event at now may be logged and, if so, how many
// were held back since the last one logged.
func (l *logLimiter) allow(now time.Time) (ok bool, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.window {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.skipped++
		return false, 0
	}
	l.n++
	skipped, l.skipped = l.skipped, 0
	return true, skipped
}
