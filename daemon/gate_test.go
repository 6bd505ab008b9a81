package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// probeDevice is a fake store device that records what reaches it, in
// order. With hold set, every call but Flush announces itself on entered
// and then waits for a token on proceed.
type probeDevice struct {
	hold     bool
	entered  chan string
	proceed  chan struct{}
	flushErr error

	mu     sync.Mutex // guards events
	events []string
}

func newProbeDevice(hold bool) *probeDevice {
	return &probeDevice{hold: hold, entered: make(chan string, 64), proceed: make(chan struct{})}
}

func (p *probeDevice) call(what string) {
	if p.hold {
		p.entered <- what
		<-p.proceed
	}
	p.mu.Lock()
	p.events = append(p.events, what)
	p.mu.Unlock()
}

func (p *probeDevice) log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.events...)
}

func (p *probeDevice) ReadAt(b []byte, off int64) (int, error) {
	p.call(fmt.Sprintf("read %d", off))
	return len(b), nil
}
func (p *probeDevice) WriteAt(b []byte, off int64) (int, error) {
	p.call(fmt.Sprintf("write %d", off))
	return len(b), nil
}
func (p *probeDevice) WriteAtFUA(b []byte, off int64) (int, error) {
	p.call(fmt.Sprintf("write fua %d", off))
	return len(b), nil
}
func (p *probeDevice) Discard(off, length int64) error {
	p.call(fmt.Sprintf("discard %d", off))
	return nil
}
func (p *probeDevice) WriteZeroes(off, length int64) error {
	p.call(fmt.Sprintf("write zeroes %d", off))
	return nil
}

// Flush never holds: the gate's pause calls it once the requests drained.
func (p *probeDevice) Flush() error {
	p.mu.Lock()
	p.events = append(p.events, "flush")
	p.mu.Unlock()
	return p.flushErr
}

// quiet is a logger for backends whose error lines the test ignores.
var quiet = zerolog.New(io.Discard)

// guestOps are the requests a guest sends, one of each kind, at offset off.
func guestOps(b *guestBackend, off int64) []func() error {
	buf := make([]byte, 4096)
	return []func() error{
		func() error { _, err := b.ReadAt(buf, off); return err },
		func() error { _, err := b.WriteAt(buf, off); return err },
		func() error { _, err := b.WriteAtFUA(buf, off); return err },
		func() error { return b.Discard(off, 4096) },
		func() error { return b.WriteZeroes(off, 4096) },
		func() error { return b.Flush() },
	}
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10 s", what)
		}
	}
}

// stillWaiting fails the test if c yields within a short while: what
// must be held.
func stillWaiting[T any](t *testing.T, c <-chan T, what string) {
	t.Helper()
	select {
	case v := <-c:
		t.Fatalf("%s did not wait: %v", what, v)
	case <-time.After(50 * time.Millisecond):
	}
}

// A pause holds new requests (they wait, none fails), waits for the one
// already inside the store, flushes the store after it, and only then
// returns; resume lets the held request go on.
func TestPauseHoldsDrainsFlushesResumes(t *testing.T) {
	dev := newProbeDevice(true)
	b := newGuestBackend(dev, nil, "vm1", 512, false, quiet)
	r1 := make(chan error, 1)
	go func() { _, err := b.WriteAt(make([]byte, 4096), 0); r1 <- err }()
	if got := <-dev.entered; got != "write 0" {
		t.Fatalf("entered %q", got)
	}
	paused := make(chan error, 1)
	go func() { paused <- b.gate.pause(context.Background(), dev.Flush) }()
	eventually(t, "paused", b.gate.paused)

	r2 := make(chan error, 1)
	go func() { _, err := b.WriteAt(make([]byte, 4096), 4096); r2 <- err }()
	stillWaiting(t, paused, "pause, with a request inside the store,")
	stillWaiting(t, dev.entered, "a request issued during the pause")

	dev.proceed <- struct{}{} // the request inside the store finishes
	if err := <-r1; err != nil {
		t.Fatal(err)
	}
	if err := <-paused; err != nil {
		t.Fatal(err)
	}
	if got := dev.log(); len(got) != 2 || got[0] != "write 0" || got[1] != "flush" {
		t.Fatalf("store saw %q before pause returned, want the write then a flush", got)
	}
	stillWaiting(t, dev.entered, "a request held by a completed pause")
	stillWaiting(t, r2, "a request held by a completed pause")

	if err := b.gate.resume(); err != nil {
		t.Fatal(err)
	}
	if got := <-dev.entered; got != "write 4096" {
		t.Fatalf("entered %q after resume", got)
	}
	dev.proceed <- struct{}{}
	if err := <-r2; err != nil {
		t.Fatalf("held request failed after resume: %v", err)
	}
	if got := dev.log(); len(got) != 3 || got[2] != "write 4096" {
		t.Fatalf("store saw %q", got)
	}
	if b.gate.paused() {
		t.Fatal("still paused after resume")
	}
	if err := b.gate.resume(); err != nil {
		t.Fatalf("resume of an open gate: %v", err)
	}
}

// Releasing a paused device (del) fails every held request, and every
// later one, with EIO instead of leaving them waiting; nothing more
// reaches the store, and pause and resume are refused. Releasing an open
// device lets its requests go on (the stop drains them) but refuses a
// pause.
func TestReleasePausedDeviceFailsHeldRequests(t *testing.T) {
	dev := newProbeDevice(false)
	b := newGuestBackend(dev, nil, "vm1", 512, false, quiet)
	if err := b.gate.pause(context.Background(), dev.Flush); err != nil {
		t.Fatal(err)
	}
	ops := guestOps(b, 8192)
	results := make(chan error, len(ops))
	for _, op := range ops {
		go func() { results <- op() }()
	}
	stillWaiting(t, results, "a request to a paused device")
	b.gate.close()
	for range ops {
		select {
		case err := <-results:
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("held request: got %v, want EIO", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a held request still waits after the release")
		}
	}
	for _, op := range ops {
		if err := op(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("request after the release: got %v, want EIO", err)
		}
	}
	if got := dev.log(); len(got) != 1 || got[0] != "flush" {
		t.Fatalf("store saw %q, want only the pause's flush", got)
	}
	if err := b.gate.pause(context.Background(), dev.Flush); !errors.Is(err, ErrReleased) {
		t.Fatalf("pause after release: %v", err)
	}
	if err := b.gate.resume(); !errors.Is(err, ErrReleased) {
		t.Fatalf("resume after release: %v", err)
	}

	open := newGuestBackend(dev, nil, "vm2", 512, false, quiet)
	open.gate.close()
	for _, op := range guestOps(open, 0) {
		if err := op(); err != nil {
			t.Fatalf("request to a released device that was not paused: %v", err)
		}
	}
	if err := open.gate.pause(context.Background(), dev.Flush); !errors.Is(err, ErrReleased) {
		t.Fatalf("pause after release: %v", err)
	}
}

// A pause that cannot complete leaves the device as it was: one whose
// requests do not leave the store in time, one whose flush fails, one
// resumed before it drained.
func TestPauseThatFailsChangesNothing(t *testing.T) {
	t.Run("drain timeout", func(t *testing.T) {
		dev := newProbeDevice(true)
		b := newGuestBackend(dev, nil, "vm1", 512, false, quiet)
		r1 := make(chan error, 1)
		go func() { _, err := b.WriteAt(make([]byte, 512), 0); r1 <- err }()
		<-dev.entered
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := b.gate.pause(ctx, dev.Flush)
		if !errors.Is(err, ErrPauseEnded) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v", err)
		}
		if b.gate.paused() {
			t.Fatal("a pause that timed out left the device paused")
		}
		r2 := make(chan error, 1)
		go func() { _, err := b.ReadAt(make([]byte, 512), 0); r2 <- err }()
		if got := <-dev.entered; got != "read 0" {
			t.Fatalf("entered %q", got)
		}
		dev.proceed <- struct{}{}
		dev.proceed <- struct{}{}
		if err := errors.Join(<-r1, <-r2); err != nil {
			t.Fatal(err)
		}
		if got := dev.log(); len(got) != 2 {
			t.Fatalf("store saw %q (no flush wanted)", got)
		}
	})
	t.Run("flush fails", func(t *testing.T) {
		dev := newProbeDevice(false)
		dev.flushErr = errors.New("disk gone")
		b := newGuestBackend(dev, nil, "vm1", 512, false, quiet)
		if err := b.gate.pause(context.Background(), dev.Flush); err == nil || err.Error() != "disk gone" {
			t.Fatalf("got %v", err)
		}
		if b.gate.paused() {
			t.Fatal("a pause whose flush failed left the device paused")
		}
		if _, err := b.WriteAt(make([]byte, 512), 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("resumed while draining", func(t *testing.T) {
		dev := newProbeDevice(true)
		b := newGuestBackend(dev, nil, "vm1", 512, false, quiet)
		r1 := make(chan error, 1)
		go func() { _, err := b.WriteAt(make([]byte, 512), 0); r1 <- err }()
		<-dev.entered
		paused := make(chan error, 1)
		go func() { paused <- b.gate.pause(context.Background(), dev.Flush) }()
		eventually(t, "paused", b.gate.paused)
		b.gate.resume()
		if err := <-paused; !errors.Is(err, ErrPauseEnded) {
			t.Fatalf("got %v", err)
		}
		dev.proceed <- struct{}{}
		if err := <-r1; err != nil {
			t.Fatal(err)
		}
	})
}

// raceDevice counts the requests inside it and notes any that reach it
// while the test holds the device paused.
type raceDevice struct {
	frozen     atomic.Bool
	inside     atomic.Int64
	done       atomic.Int64
	violations atomic.Int64
}

func (r *raceDevice) call() {
	r.inside.Add(1)
	if r.frozen.Load() {
		r.violations.Add(1)
	}
	for range rand.IntN(3) {
		time.Sleep(0) // vary how long requests stay inside
	}
	r.done.Add(1)
	r.inside.Add(-1)
}
func (r *raceDevice) ReadAt(b []byte, off int64) (int, error)     { r.call(); return len(b), nil }
func (r *raceDevice) WriteAt(b []byte, off int64) (int, error)    { r.call(); return len(b), nil }
func (r *raceDevice) WriteAtFUA(b []byte, off int64) (int, error) { r.call(); return len(b), nil }
func (r *raceDevice) Flush() error                                { r.call(); return nil }
func (r *raceDevice) Discard(off, length int64) error             { r.call(); return nil }
func (r *raceDevice) WriteZeroes(off, length int64) error         { r.call(); return nil }

// Requests hammer a device that is paused and resumed again and again
// (run with -race): each pause returns with nothing inside the store and
// nothing enters it until the resume; every request completes, none
// fails; the flush finds the store empty.
func TestPauseResumeRace(t *testing.T) {
	dev := &raceDevice{}
	b := newGuestBackend(dev, nil, "vm1", 512, false, quiet)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Go(func() {
			ops := guestOps(b, int64(w)*4096)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := ops[i%len(ops)](); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	flushedBusy := 0
	flush := func() error {
		if dev.inside.Load() != 0 {
			flushedBusy++
		}
		return nil
	}
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	for range rounds {
		if err := b.gate.pause(context.Background(), flush); err != nil {
			t.Fatal(err)
		}
		if n := dev.inside.Load(); n != 0 {
			t.Fatalf("pause returned with %d requests inside the store", n)
		}
		dev.frozen.Store(true)
		before := dev.done.Load()
		time.Sleep(50 * time.Microsecond)
		if dev.done.Load() != before {
			t.Fatal("requests completed in the store during the pause")
		}
		dev.frozen.Store(false)
		if err := b.gate.resume(); err != nil {
			t.Fatal(err)
		}
		// let requests flow before the next pause, so that it meets some
		// inside the store and some on their way in
		resumed := dev.done.Load()
		for deadline := time.Now().Add(10 * time.Second); dev.done.Load() < resumed+16; runtime.Gosched() {
			if time.Now().After(deadline) {
				t.Fatal("no request got through after a resume")
			}
		}
	}
	close(stop)
	wg.Wait()
	if v := dev.violations.Load(); v != 0 {
		t.Fatalf("%d requests reached the store while paused", v)
	}
	if flushedBusy != 0 {
		t.Fatalf("%d flushes with requests inside the store", flushedBusy)
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d requests failed", n)
	}
	if dev.done.Load() == 0 {
		t.Fatal("no request got through")
	}
	if n := b.gate.inflight.Load(); n != 0 {
		t.Fatalf("in-flight count %d at rest", n)
	}
}
