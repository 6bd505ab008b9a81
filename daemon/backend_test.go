package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"blockhash/blockstore"
	"blockhash/engine"
)

// failingDevice fails every call with err (nil: succeeds).
type failingDevice struct{ err error }

func (f failingDevice) ReadAt(p []byte, off int64) (int, error)     { return f.n(p) }
func (f failingDevice) WriteAt(p []byte, off int64) (int, error)    { return f.n(p) }
func (f failingDevice) WriteAtFUA(p []byte, off int64) (int, error) { return f.n(p) }
func (f failingDevice) Flush() error                                { return f.err }
func (f failingDevice) Discard(off, length int64) error             { return f.err }
func (f failingDevice) WriteZeroes(off, length int64) error         { return f.err }
func (f failingDevice) n(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	return len(p), nil
}

// The guest gets ENOSPC for a full store and EIO for everything else
// (the ublk queue commits the errno an error wraps, EIO if none); each
// failure is one error line naming the device, offset, LBA and length;
// a success logs nothing.
func TestGuestBackendErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		want    syscall.Errno // 0: success
		logWant string
	}{
		{"ok", nil, 0, ""},
		{"store full", fmt.Errorf("grow: %w: preallocating extent-3.dat: no space left on device", blockstore.ErrFull), syscall.ENOSPC, "store full"},
		{"engine corrupt", fmt.Errorf("read slot 7: %w", engine.ErrCorrupt), syscall.EIO, "damaged data"},
		{"blockstore corrupt", &blockstore.CorruptError{What: "block", Slots: []blockstore.Slot{7}}, syscall.EIO, "damaged data"},
		{"other", errors.New("journal write failed"), syscall.EIO, "store error"},
		{"other errno", fmt.Errorf("pwrite: %w", syscall.EROFS), syscall.EIO, "store error"},
		{"snapshot", fmt.Errorf("write vm1@s: %w", engine.ErrSnapshot), syscall.EROFS, "read-only device"},
		{"store read-only", fmt.Errorf("write: %w", engine.ErrReadOnly), syscall.EROFS, "read-only device"},
	}
	ops := []struct {
		name string
		do   func(b *guestBackend) error
	}{
		{"read", func(b *guestBackend) error { _, err := b.ReadAt(make([]byte, 4096), 8192); return err }},
		{"write", func(b *guestBackend) error { _, err := b.WriteAt(make([]byte, 4096), 8192); return err }},
		{"write fua", func(b *guestBackend) error { _, err := b.WriteAtFUA(make([]byte, 4096), 8192); return err }},
		{"flush", func(b *guestBackend) error { return b.Flush() }},
		{"discard", func(b *guestBackend) error { return b.Discard(8192, 4096) }},
		{"write zeroes", func(b *guestBackend) error { return b.WriteZeroes(8192, 4096) }},
	}
	for _, tc := range tests {
		for _, op := range ops {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				var logs bytes.Buffer
				b := newGuestBackend(failingDevice{tc.err}, nil, "vm1", 4096, false, zerolog.New(&logs))
				err := op.do(b)
				if tc.want == 0 {
					if err != nil || logs.Len() != 0 {
						t.Fatalf("success: err %v, logged %q", err, logs.String())
					}
					return
				}
				var errno syscall.Errno
				if !errors.As(err, &errno) || errno != tc.want {
					t.Fatalf("guest error %v, want %v", err, tc.want)
				}
				line := logs.String()
				if strings.Count(line, "\n") != 1 || !strings.Contains(line, `"level":"error"`) ||
					!strings.Contains(line, `"device":"vm1"`) || !strings.Contains(line, tc.logWant) {
					t.Fatalf("log: %q", line)
				}
				if op.name != "flush" && (!strings.Contains(line, `"offset":8192`) || !strings.Contains(line, `"lba":2`) ||
					!strings.Contains(line, `"length":4096`)) {
					t.Fatalf("log lacks offset, LBA or length: %q", line)
				}
			})
		}
	}
}

// A storm of failures logs at most a burst per window, then says how many
// lines it left out.
func TestGuestBackendLogLimit(t *testing.T) {
	var logs bytes.Buffer
	b := newGuestBackend(failingDevice{errors.New("boom")}, nil, "vm1", 512, false, zerolog.New(&logs))
	for i := 0; i < 1000; i++ {
		b.ReadAt(make([]byte, 512), int64(i)*512)
	}
	if n := strings.Count(logs.String(), "\n"); n != errBurst {
		t.Fatalf("%d lines for 1000 failures, want %d", n, errBurst)
	}
	now := time.Now()
	l := logLimiter{burst: 2, window: time.Second}
	steps := []struct {
		at      time.Duration
		ok      bool
		skipped int
	}{
		{0, true, 0}, {1, true, 0}, {2, false, 0}, {3, false, 0},
		{time.Second, true, 2}, {time.Second + 1, true, 0}, {time.Second + 2, false, 0},
	}
	for i, s := range steps {
		ok, skipped := l.allow(now.Add(s.at))
		if ok != s.ok || skipped != s.skipped {
			t.Fatalf("step %d: ok %v skipped %d, want %v %d", i, ok, skipped, s.ok, s.skipped)
		}
	}
}

// countingDevice counts the calls that change data.
type countingDevice struct {
	failingDevice
	changes int
}

func (c *countingDevice) WriteAt(p []byte, off int64) (int, error) { c.changes++; return len(p), nil }
func (c *countingDevice) WriteAtFUA(p []byte, off int64) (int, error) {
	c.changes++
	return len(p), nil
}
func (c *countingDevice) Discard(off, length int64) error     { c.changes++; return nil }
func (c *countingDevice) WriteZeroes(off, length int64) error { c.changes++; return nil }

// A device served read-only answers reads and flushes; every change is
// EROFS, logged at error level (rate-limited), and never reaches the store.
func TestGuestBackendReadOnly(t *testing.T) {
	tests := []struct {
		name string
		do   func(b *guestBackend) error
		want syscall.Errno // 0: success
	}{
		{"read", func(b *guestBackend) error { _, err := b.ReadAt(make([]byte, 4096), 8192); return err }, 0},
		{"flush", func(b *guestBackend) error { return b.Flush() }, 0},
		{"write", func(b *guestBackend) error { _, err := b.WriteAt(make([]byte, 4096), 8192); return err }, syscall.EROFS},
		{"write fua", func(b *guestBackend) error { _, err := b.WriteAtFUA(make([]byte, 4096), 8192); return err }, syscall.EROFS},
		{"discard", func(b *guestBackend) error { return b.Discard(8192, 4096) }, syscall.EROFS},
		{"write zeroes", func(b *guestBackend) error { return b.WriteZeroes(8192, 4096) }, syscall.EROFS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			dev := &countingDevice{}
			b := newGuestBackend(dev, nil, "vm1@s", 4096, true, zerolog.New(&logs))
			err := tc.do(b)
			if dev.changes != 0 {
				t.Fatalf("%d changes reached the store", dev.changes)
			}
			if tc.want == 0 {
				if err != nil || logs.Len() != 0 {
					t.Fatalf("err %v, logged %q", err, logs.String())
				}
				return
			}
			var errno syscall.Errno
			if !errors.As(err, &errno) || errno != tc.want {
				t.Fatalf("guest error %v, want %v", err, tc.want)
			}
			line := logs.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, `"level":"error"`) ||
				!strings.Contains(line, `"device":"vm1@s"`) || !strings.Contains(line, "read-only device") || !strings.Contains(line, `"lba":2`) {
				t.Fatalf("log: %q", line)
			}
			for range 100 {
				tc.do(b)
			}
			if n := strings.Count(logs.String(), "\n"); n != errBurst {
				t.Fatalf("%d lines for 101 refused writes, want %d", n, errBurst)
			}
		})
	}
}
