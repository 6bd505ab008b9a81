package ublk

import (
	"bytes"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newTestRing(t testing.TB, entries uint32, opt RingOptions) *Ring {
	t.Helper()
	r, err := NewRing(entries, opt)
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRingNop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries uint32
		opt     RingOptions
		n       int
	}{
		{"plain-8x1000", 8, RingOptions{}, 1000},
		{"sqe128-4x100", 4, RingOptions{SQE128: true}, 100},
		{"cqsize-2x50", 2, RingOptions{CQEntries: 64}, 50},
		{"single-thread-8x500", 8, RingOptions{CQEntries: 32, SingleThread: true}, 500},
		{"no-sleep-submit-8x500", 8, RingOptions{CQEntries: 32, SingleThread: true, NoSleepSubmit: true}, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opt.SingleThread { // SINGLE_ISSUER: one thread submits
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
			}
			r := newTestRing(t, tc.entries, tc.opt)
			if r.SQEntries() != tc.entries {
				t.Fatalf("SQEntries = %d, want %d", r.SQEntries(), tc.entries)
			}
			seen := make(map[uint64]bool)
			next := 0
			cqes := make([]CQE, 16)
			for len(seen) < tc.n {
				for next < tc.n {
					s := r.GetSQE()
					if s == nil {
						break
					}
					PrepNop(s, uint64(next)+1)
					next++
				}
				if _, err := r.SubmitAndWait(1); err != nil {
					t.Fatal(err)
				}
				k := r.ReapCQEs(cqes)
				for _, c := range cqes[:k] {
					if c.Res != 0 {
						t.Fatalf("NOP %d: res %d", c.UserData, c.Res)
					}
					if seen[c.UserData] {
						t.Fatalf("duplicate CQE %d", c.UserData)
					}
					seen[c.UserData] = true
				}
			}
			if r.CQReady() != 0 {
				t.Fatalf("CQReady = %d after reaping all", r.CQReady())
			}
		})
	}
}

func TestRingSQFull(t *testing.T) {
	r := newTestRing(t, 4, RingOptions{})
	for i := 0; i < 4; i++ {
		if r.GetSQE() == nil {
			t.Fatalf("GetSQE %d: nil before the queue is full", i)
		}
	}
	if r.GetSQE() != nil {
		t.Fatal("GetSQE on a full queue returned a slot")
	}
}

func TestRingFileIO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := newTestRing(t, 8, RingOptions{})
	buf, err := AllocBuffer(3 * 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer FreeBuffer(buf)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	// Three writes at different offsets, then three reads into the other
	// halves, completing in any order.
	want := append([]byte(nil), buf...)
	for i := 0; i < 3; i++ {
		PrepWrite(r.GetSQE(), int(f.Fd()), buf[i*4096:(i+1)*4096], uint64(i)*8192, uint64(i))
	}
	for i := 0; i < 3; i++ {
		c, err := r.WaitCQE()
		if err != nil {
			t.Fatal(err)
		}
		if c.Res != 4096 {
			t.Fatalf("write %d: res %d", c.UserData, c.Res)
		}
	}
	clear(buf)
	for i := 0; i < 3; i++ {
		PrepRead(r.GetSQE(), int(f.Fd()), buf[i*4096:(i+1)*4096], uint64(i)*8192, uint64(10+i))
	}
	for i := 0; i < 3; i++ {
		c, err := r.WaitCQE()
		if err != nil {
			t.Fatal(err)
		}
		if c.Res != 4096 {
			t.Fatalf("read %d: res %d", c.UserData, c.Res)
		}
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("data read through the ring differs from data written")
	}
	// Cross-check with ordinary pread.
	chk := make([]byte, 4096)
	if _, err := f.ReadAt(chk, 2*8192); err != nil || !bytes.Equal(chk, want[2*4096:]) {
		t.Fatalf("pread after ring write: %v", err)
	}
}

func TestRingErrorResult(t *testing.T) {
	r := newTestRing(t, 2, RingOptions{})
	buf, _ := AllocBuffer(4096)
	defer FreeBuffer(buf)
	PrepRead(r.GetSQE(), 1<<20, buf, 0, 7) // bad fd
	c, err := r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if c.UserData != 7 || c.Res != -int32(unix.EBADF) {
		t.Fatalf("CQE = %+v, want user_data 7 res -EBADF", c)
	}
}

func TestRingUringCmdPayloadSize(t *testing.T) {
	plain := newTestRing(t, 2, RingOptions{})
	if err := plain.PrepUringCmd(plain.GetSQE(), 0, 0, make([]byte, 16), 0); err != nil {
		t.Fatalf("16-byte payload in a plain ring: %v", err)
	}
	if err := plain.PrepUringCmd(plain.GetSQE(), 0, 0, make([]byte, 32), 0); err == nil {
		t.Fatal("32-byte payload accepted in a plain ring")
	}
	big := newTestRing(t, 2, RingOptions{SQE128: true})
	s := big.GetSQE()
	payload := bytes.Repeat([]byte{0xAB}, 80)
	if err := big.PrepUringCmd(s, 3, 0xc0207504, payload, 9); err != nil {
		t.Fatalf("80-byte payload in an SQE128 ring: %v", err)
	}
	if s.Opcode != OpUringCmd || s.Fd != 3 || uint32(s.Off) != 0xc0207504 || s.UserData != 9 {
		t.Fatalf("SQE = %+v", *s)
	}
	if !bytes.Equal(big.cmdArea(s), payload) {
		t.Fatal("command area does not hold the payload")
	}
}

// TestRingPollEventfd checks the wakeup path of the queues: a POLL_ADD on an
// eventfd completes when another goroutine writes the eventfd.
func TestRingPollEventfd(t *testing.T) {
	r := newTestRing(t, 4, RingOptions{})
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	PrepPollAdd(r.GetSQE(), efd, unix.POLLIN, 42)
	if _, err := r.Submit(); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	}()
	c, err := r.WaitCQE()
	if err != nil {
		t.Fatal(err)
	}
	if c.UserData != 42 || c.Res&int32(unix.POLLIN) == 0 {
		t.Fatalf("poll CQE = %+v", c)
	}
}

// TestRingPoll checks that Poll neither blocks nor misses completions on
// a ring whose completions are deferred task work (SingleThread): a
// POLL_ADD completion reaches the CQ only when the ring is entered asking
// for events, and a plain Submit never asks.
func TestRingPoll(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := newTestRing(t, 4, RingOptions{SingleThread: true, NoSleepSubmit: true})
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	PrepPollAdd(r.GetSQE(), efd, unix.POLLIN, 42)
	if n, err := r.Poll(); err != nil || n != 1 {
		t.Fatalf("Poll = %d, %v; want 1 submitted", n, err)
	}
	if _, err := r.Poll(); err != nil { // nothing ready: must return at once
		t.Fatal(err)
	}
	if r.CQReady() != 0 {
		t.Fatalf("CQReady = %d before the eventfd was written", r.CQReady())
	}
	if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	cqes := make([]CQE, 4)
	for i := 0; i < 100 && r.CQReady() == 0; i++ {
		if _, err := r.Poll(); err != nil {
			t.Fatal(err)
		}
		if r.CQReady() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if n := r.ReapCQEs(cqes); n != 1 || cqes[0].UserData != 42 || cqes[0].Res&int32(unix.POLLIN) == 0 {
		t.Fatalf("after Poll: %d CQEs %+v, want the POLL_ADD's", n, cqes[:n])
	}
}

func TestRingRegisterEventfd(t *testing.T) {
	r := newTestRing(t, 4, RingOptions{})
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := r.RegisterEventfd(efd); err != nil {
		t.Fatal(err)
	}
	PrepNop(r.GetSQE(), 1)
	if _, err := r.WaitCQE(); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	if _, err := unix.Read(efd, b[:]); err != nil {
		t.Fatalf("eventfd not signalled after a completion: %v", err)
	}
	if err := r.UnregisterEventfd(); err != nil {
		t.Fatal(err)
	}
}

// TestRingEINTR blocks a locked thread in io_uring_enter(GETEVENTS) and
// bombards that thread with signals; the wait must be retried and return
// the completion that arrives afterwards, never EINTR.
func TestRingEINTR(t *testing.T) {
	sigs := make(chan os.Signal, 1024)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	go func() {
		for range sigs {
		}
	}()

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	var tid atomic.Int32
	type result struct {
		c   CQE
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r, err := NewRing(4, RingOptions{})
		if err != nil {
			done <- result{err: err}
			return
		}
		defer r.Close()
		PrepPollAdd(r.GetSQE(), efd, unix.POLLIN, 5)
		tid.Store(int32(unix.Gettid()))
		c, err := r.WaitCQE()
		done <- result{c, err}
	}()
	for tid.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 50; i++ {
		_ = unix.Tgkill(unix.Getpid(), int(tid.Load()), unix.SIGUSR1)
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case res := <-done:
		t.Fatalf("wait returned before the completion: %+v %v", res.c, res.err)
	default:
	}
	unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("WaitCQE: %v", res.err)
		}
		if res.c.UserData != 5 {
			t.Fatalf("CQE = %+v", res.c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitCQE did not return after the eventfd write")
	}
}

func BenchmarkRingNop(b *testing.B) {
	r := newTestRing(b, 64, RingOptions{})
	cqes := make([]CQE, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i += 32 {
		for j := 0; j < 32; j++ {
			PrepNop(r.GetSQE(), uint64(j))
		}
		got := 0
		for got < 32 {
			if _, err := r.SubmitAndWait(1); err != nil {
				b.Fatal(err)
			}
			got += r.ReapCQEs(cqes)
		}
	}
}
