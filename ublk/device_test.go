package ublk

// Tests against the real ublk driver. They skip unless /dev/ublk-control
// exists and the process is root; the VM harness runs them (build with
// `CGO_ENABLED=0 go test -c ./ublk`).

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func needUblk(t *testing.T) *Control {
	t.Helper()
	if _, err := os.Stat(ControlPath); err != nil {
		t.Skipf("%s absent: the real ublk driver is needed", ControlPath)
	}
	if os.Geteuid() != 0 {
		t.Skip("ublk needs root")
	}
	c, err := OpenControl()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newStarted creates and starts a device; the test stops it.
func newStarted(t *testing.T, c *Control, cfg Config, b Backend) *Device {
	t.Helper()
	d, err := New(c, cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	return d
}

// startDevice creates and starts a device and stops it at cleanup.
func startDevice(t *testing.T, c *Control, cfg Config, b Backend) *Device {
	t.Helper()
	d := newStarted(t, c, cfg, b)
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return d
}

func openDirect(t *testing.T, path string, flags int) int {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func alignedBuf(t testing.TB, n int) []byte {
	b, err := AllocBuffer(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { FreeBuffer(b) })
	return b
}

func TestRealFeatures(t *testing.T) {
	c := needUblk(t)
	f, err := c.Features()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("features %#x: %s", f, FeatureString(f))
	for _, need := range []uint64{FeatureCmdIoctlEncode, FeatureUserRecovery, FeatureUserRecoveryReissue} {
		if f&need == 0 {
			t.Errorf("kernel lacks %s", FeatureString(need))
		}
	}
}

func TestRealRoundTrip(t *testing.T) {
	c := needUblk(t)
	for _, tc := range []struct {
		queues, lbs, depth int
		userCopy           bool
		plain              bool // hide MemBackend's optional interfaces: worker path, no PayloadBackend
	}{
		{1, 512, 128, false, false},
		{2, 512, 64, false, true},
		{1, 4096, 4096, false, false},
		{2, 4096, 32, false, false},
		{1, 512, 128, true, false},
		{2, 4096, 64, true, false},
		{2, 512, 32, true, true},
	} {
		name := fmt.Sprintf("q%d-lbs%d-d%d", tc.queues, tc.lbs, tc.depth)
		if tc.userCopy {
			name += "-usercopy"
		}
		if tc.plain {
			name += "-plain"
		}
		t.Run(name, func(t *testing.T) {
			mem := NewMemBackend(64 << 20)
			var b Backend = mem
			if tc.plain {
				b = plainBackend{mem}
			}
			d := startDevice(t, c, Config{ID: -1, Queues: tc.queues, Depth: tc.depth, Size: 64 << 20, LogicalBlockSize: tc.lbs, UserCopy: tc.userCopy}, b)
			info, err := c.DeviceInfo(d.ID())
			if err != nil {
				t.Fatal(err)
			}
			if info.State != StateLive || int(info.UblksrvPID) != os.Getpid() || int(info.NrHWQueues) != tc.queues {
				t.Fatalf("dev info %+v", info)
			}
			if got := info.Flags&FeatureUserCopy != 0; got != tc.userCopy {
				t.Fatalf("UBLK_F_USER_COPY = %v, want %v (flags %s)", got, tc.userCopy, FeatureString(info.Flags))
			}
			fd := openDirect(t, d.BlockPath(), 0)
			var ss int
			ss, err = unix.IoctlGetInt(fd, unix.BLKSSZGET)
			if err != nil || ss != tc.lbs {
				t.Fatalf("BLKSSZGET = %d, %v; want %d", ss, err, tc.lbs)
			}
			buf := alignedBuf(t, 1<<20)
			for _, w := range []struct{ off, n int }{{0, 4096}, {tc.lbs * 3, tc.lbs}, {60 << 20, 1 << 20}, {(64 << 20) - tc.lbs, tc.lbs}} {
				copy(buf, pattern(w.n, byte(w.off>>9)))
				if n, err := unix.Pwrite(fd, buf[:w.n], int64(w.off)); err != nil || n != w.n {
					t.Fatalf("pwrite %+v: %d %v", w, n, err)
				}
				clear(buf)
				if n, err := unix.Pread(fd, buf[:w.n], int64(w.off)); err != nil || n != w.n {
					t.Fatalf("pread %+v: %d %v", w, n, err)
				}
				if !bytes.Equal(buf[:w.n], pattern(w.n, byte(w.off>>9))) {
					t.Fatalf("data mismatch at %+v", w)
				}
				// The backend holds the data at the same byte offset.
				if got := readAll(t, mem, int64(w.off), w.n); !bytes.Equal(got, pattern(w.n, byte(w.off>>9))) {
					t.Fatalf("backend content mismatch at %+v", w)
				}
			}
			if err := unix.Fsync(fd); err != nil {
				t.Fatal(err)
			}
			if s := mem.Stats(); s.Flushes == 0 {
				t.Fatalf("fsync did not reach Flush: %+v", s)
			}
		})
	}
}

func TestRealDiscardZeroesFUA(t *testing.T) {
	c := needUblk(t)
	mem := NewMemBackend(64 << 20)
	d := startDevice(t, c, Config{ID: -1, Size: 64 << 20}, mem)
	fd := openDirect(t, d.BlockPath(), 0)
	buf := alignedBuf(t, 1<<20)
	copy(buf, pattern(1<<20, 7))
	if _, err := unix.Pwrite(fd, buf, 0); err != nil {
		t.Fatal(err)
	}
	rng := [2]uint64{0, 256 << 10}
	if err := ioctlRange(fd, unix.BLKDISCARD, rng); err != nil {
		t.Fatalf("BLKDISCARD: %v", err)
	}
	rng = [2]uint64{512 << 10, 128 << 10}
	if err := ioctlRange(fd, unix.BLKZEROOUT, rng); err != nil {
		t.Fatalf("BLKZEROOUT: %v", err)
	}
	if _, err := unix.Pread(fd, buf, 0); err != nil {
		t.Fatal(err)
	}
	want := pattern(1<<20, 7)
	clear(want[:256<<10])
	clear(want[512<<10 : 640<<10])
	if !bytes.Equal(buf, want) {
		t.Fatal("discard/zeroout result wrong")
	}
	fua := openDirect(t, d.BlockPath(), unix.O_DSYNC)
	if _, err := unix.Pwrite(fua, buf[:4096], 4<<20); err != nil {
		t.Fatal(err)
	}
	s := mem.Stats()
	t.Logf("stats %+v", s)
	if s.Discards == 0 || s.WriteZeroes == 0 || s.FUAWrites == 0 {
		t.Fatalf("discard/write_zeroes/FUA did not reach the backend: %+v", s)
	}
}

// plainBackend offers only the Backend methods of what it wraps: no
// Inliner, FUAWriter or PayloadBackend.
type plainBackend struct{ Backend }

// slowBackend delays reads of one sector range to show that a slow
// request does not hold up other tags.
type slowBackend struct {
	*MemBackend
	slowOff int64
	delay   time.Duration
	slowHit atomic.Int32
}

// ServeInline overrides MemBackend's: this backend blocks, so its
// requests must go to workers.
func (s *slowBackend) ServeInline() bool { return false }

func (s *slowBackend) ReadAt(p []byte, off int64) (int, error) {
	if off == s.slowOff {
		s.slowHit.Add(1)
		time.Sleep(s.delay)
	}
	return s.MemBackend.ReadAt(p, off)
}

// ReadTo is ReadAt's twin for devices served with UserCopy.
func (s *slowBackend) ReadTo(p Payload, off int64) error {
	if off == s.slowOff {
		s.slowHit.Add(1)
		time.Sleep(s.delay)
	}
	return s.MemBackend.ReadTo(p, off)
}

func TestRealOutOfOrder(t *testing.T) {
	c := needUblk(t)
	sb := &slowBackend{MemBackend: NewMemBackend(64 << 20), slowOff: 32 << 20, delay: 2 * time.Second}
	d := startDevice(t, c, Config{ID: -1, Depth: 16, Size: 64 << 20}, sb)
	fd := openDirect(t, d.BlockPath(), 0)
	slowDone := make(chan time.Time, 1)
	go func() {
		buf, _ := AllocBuffer(4096)
		defer FreeBuffer(buf)
		unix.Pread(fd, buf, 32<<20)
		slowDone <- time.Now()
	}()
	for sb.slowHit.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	buf := alignedBuf(t, 4096)
	for i := 0; i < 100; i++ {
		if _, err := unix.Pread(fd, buf, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	fast := time.Since(start)
	select {
	case <-slowDone:
		t.Fatalf("slow read finished before the 100 fast ones (%v)", fast)
	default:
	}
	if fast > time.Second {
		t.Fatalf("100 reads took %v while one slow read was pending", fast)
	}
	<-slowDone
	t.Logf("100 reads in %v beside a %v read", fast, sb.delay)
}

func TestRealConcurrentVerify(t *testing.T) {
	c := needUblk(t)
	for _, userCopy := range []bool{false, true} {
		t.Run(fmt.Sprintf("usercopy=%v", userCopy), func(t *testing.T) { concurrentVerify(t, c, userCopy) })
	}
}

func concurrentVerify(t *testing.T, c *Control, userCopy bool) {
	const size = 32 << 20
	d := startDevice(t, c, Config{ID: -1, Queues: 2, Depth: 64, Size: size, UserCopy: userCopy}, NewMemBackend(size))
	fd := openDirect(t, d.BlockPath(), 0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf, _ := AllocBuffer(64 << 10)
			defer FreeBuffer(buf)
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; i < 100; i++ {
				// goroutine g owns blocks with index%16 == g
				n := (1 + rng.Intn(16)) * 4096
				blk := int64(rng.Intn(size/(64<<10)/16)*16+g) * (64 << 10)
				copy(buf, pattern(n, byte(i+g)))
				if _, err := unix.Pwrite(fd, buf[:n], blk); err != nil {
					errs <- err
					return
				}
				clear(buf)
				if _, err := unix.Pread(fd, buf[:n], blk); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], pattern(n, byte(i+g))) {
					errs <- fmt.Errorf("goroutine %d: mismatch at %d", g, blk)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestRealStopRemovesDevice(t *testing.T) {
	c := needUblk(t)
	d := newStarted(t, c, Config{ID: -1, Size: 16 << 20}, NewMemBackend(16<<20))
	if _, err := os.Stat(d.BlockPath()); err != nil {
		t.Fatalf("%s missing while live: %v", d.BlockPath(), err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if _, err := os.Stat(d.BlockPath()); err == nil {
		t.Fatalf("%s still exists after Stop", d.BlockPath())
	}
	if _, err := c.DeviceInfo(d.ID()); !errors.Is(err, ErrNoDevice) {
		t.Fatalf("DeviceInfo after Stop = %v, want ErrNoDevice", err)
	}
	if err := d.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// Stop of a device someone holds open returns at once (DEL_DEV_ASYNC); the
// holder reads nothing from then on; the id is free again once it closes.
func TestRealStopWhileOpen(t *testing.T) {
	c := needUblk(t)
	d := newStarted(t, c, Config{ID: -1, Size: 16 << 20}, NewMemBackend(16<<20))
	fd, err := unix.Open(d.BlockPath(), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			unix.Close(fd)
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(20 * time.Second):
		unix.Close(fd) // lets a waiting DEL_DEV return
		t.Fatal("Stop waited for the device's opener")
	}
	buf := alignedBuf(t, 4096)
	if n, err := unix.Pread(fd, buf, 0); err == nil && n > 0 { // a dead disk reads as EOF or fails
		t.Errorf("read of a stopped device returned %d bytes", n)
	}
	unix.Close(fd)
	var again *Device
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		again, err = New(c, Config{ID: d.ID(), Size: 16 << 20}, NewMemBackend(16<<20))
		if err == nil || !errors.Is(err, ErrExists) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("id %d after its opener closed: %v", d.ID(), err)
	}
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	if err := again.Stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRealDuplicateID(t *testing.T) {
	c := needUblk(t)
	d := startDevice(t, c, Config{ID: -1, Size: 16 << 20}, NewMemBackend(16<<20))
	_, err := New(c, Config{ID: d.ID(), Size: 16 << 20}, NewMemBackend(16<<20))
	if !errors.Is(err, ErrExists) {
		t.Fatalf("New with a taken id = %v, want ErrExists", err)
	}
}

func ioctlRange(fd int, req uint, r [2]uint64) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&r)))
	if errno != 0 {
		return errno
	}
	return nil
}

// TestRealAbandonRecover hands a live device over inside one process:
// Abandon while a slow read is in flight, then Recover with the same
// backend; /dev/ublkbN stays, the in-flight read is reissued and returns
// the right data, and earlier writes are still there.
func TestRealAbandonRecover(t *testing.T) {
	c := needUblk(t)
	for _, userCopy := range []bool{false, true} {
		t.Run(fmt.Sprintf("usercopy=%v", userCopy), func(t *testing.T) { abandonRecover(t, c, userCopy) })
	}
}

// abandonRecover hands a device with a read in flight over to a second
// Device; with userCopy the recovered queues must find UBLK_F_USER_COPY in
// the device's flags (the kernel refuses FETCH_REQ with a buffer address).
func abandonRecover(t *testing.T, c *Control, userCopy bool) {
	const size = 64 << 20
	sb := &slowBackend{MemBackend: NewMemBackend(size), slowOff: 32 << 20, delay: time.Second}
	d, err := New(c, Config{ID: -1, Queues: 2, Depth: 32, Size: size, UserCopy: userCopy}, sb)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	id := d.ID()
	fd, err := unix.Open(d.BlockPath(), unix.O_RDWR|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := alignedBuf(t, 1<<20)
	copy(buf, pattern(1<<20, 42))
	if _, err := unix.Pwrite(fd, buf, 32<<20); err != nil {
		t.Fatal(err)
	}
	type readResult struct {
		n   int
		err error
		ok  bool
	}
	slowRead := make(chan readResult, 1)
	go func() {
		b, _ := AllocBuffer(4096)
		defer FreeBuffer(b)
		n, err := unix.Pread(fd, b, 32<<20)
		slowRead <- readResult{n, err, bytes.Equal(b, pattern(1<<20, 42)[:4096])}
	}()
	for sb.slowHit.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := d.Abandon(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d.BlockPath()); err != nil {
		t.Fatalf("%s gone after Abandon: %v", d.BlockPath(), err)
	}
	select {
	case r := <-slowRead:
		t.Fatalf("in-flight read completed without a server: %+v", r)
	default:
	}
	d2, err := Recover(c, id, sb, RecoverOptions{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// DEL_DEV waits for every opener of /dev/ublkbN: close ours first.
		unix.Close(fd)
		if err := d2.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	select {
	case r := <-slowRead:
		if r.err != nil || r.n != 4096 || !r.ok {
			t.Fatalf("reissued read: %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("in-flight read never completed after recovery")
	}
	if hits := sb.slowHit.Load(); hits < 2 {
		t.Fatalf("slow read served %d times, want a reissue", hits)
	}
	clear(buf)
	if _, err := unix.Pread(fd, buf, 32<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, pattern(1<<20, 42)) {
		t.Fatal("data lost across the hand-over")
	}
	info, err := c.DeviceInfo(id)
	if err != nil || info.State != StateLive {
		t.Fatalf("after recovery: %+v %v", info, err)
	}
}
