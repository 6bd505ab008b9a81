package daemon

// Tests of the switch-over (pause, resume, release, invalidate) against
// the real ublk driver. They skip unless /dev/ublk-control exists and the
// process is root; the VM harness runs them (scenario daemon_gotest).

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"blockhash/engine"
	"blockhash/ublk"
)

// openReal opens a daemon on store dir over the kernel's ublk driver.
func openReal(t *testing.T, dir string) *Daemon {
	t.Helper()
	d, err := Open(Options{Store: dir, Socket: filepath.Join(filepath.Dir(dir), "s.sock"), StopDevices: true})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func needRealUblk(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(ublk.ControlPath); err != nil {
		t.Skipf("%s absent: the real ublk driver is needed", ublk.ControlPath)
	}
	if os.Geteuid() != 0 {
		t.Skip("ublk needs root")
	}
	dir := filepath.Join(t.TempDir(), "store")
	if err := engine.Create(dir, engine.Options{ExtentSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// realAdd serves a new 16 MiB device and returns its block device path.
func realAdd(t *testing.T, d *Daemon, name string, size int64) string {
	t.Helper()
	info, err := d.Add(Request{Name: name, Size: size, ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	return info.Path
}

// directWriter writes 4 KiB blocks to a block device with O_DIRECT.
type directWriter struct {
	f   *os.File
	buf []byte
}

func newDirectWriter(t *testing.T, path string) *directWriter {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := ublk.AllocBuffer(4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		ublk.FreeBuffer(buf)
	})
	return &directWriter{f: f, buf: buf}
}

// write fills block lba with b, in the background; the result comes on
// the channel returned.
func (w *directWriter) write(lba int64, b byte) <-chan error {
	done := make(chan error, 1)
	buf := bytes.Repeat([]byte{b}, 4096)
	copy(w.buf, buf)
	go func() {
		_, err := w.f.WriteAt(w.buf, lba*4096)
		done <- err
	}()
	return done
}

func within(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: still waiting after 60 s", what)
		return nil
	}
}

// readStore reads block lba of device name from the store.
func readStore(t *testing.T, d *Daemon, name string, lba int64) byte {
	t.Helper()
	dev, err := d.eng.Device(name)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	if _, err := dev.ReadAt(b, lba*4096); err != nil {
		t.Fatal(err)
	}
	return b[0]
}

// On the real driver: a write to a paused /dev/ublkbN waits (and is not
// failed) until resume; a write held when the paused device is released
// fails instead of hanging, the release completes, and the store keeps
// the content of the pause.
func TestRealPauseResumeRelease(t *testing.T) {
	dir := needRealUblk(t)
	d := openReal(t, dir)
	defer d.Close()
	path := realAdd(t, d, "a", 16<<20)
	w := newDirectWriter(t, path)
	if err := within(t, w.write(0, 1), "write before the pause"); err != nil {
		t.Fatal(err)
	}
	if err := d.Pause("a"); err != nil {
		t.Fatal(err)
	}
	held := w.write(1, 2)
	stillWaiting(t, held, "a write to the paused device")
	time.Sleep(200 * time.Millisecond)
	stillWaiting(t, held, "a write to the paused device")
	if err := d.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if err := within(t, held, "held write after resume"); err != nil {
		t.Fatalf("held write failed after resume: %v", err)
	}

	if err := d.Pause("a"); err != nil {
		t.Fatal(err)
	}
	held = w.write(2, 3)
	stillWaiting(t, held, "a write to the paused device")
	released := make(chan error, 1)
	go func() { _, err := d.Del(Request{Name: "a", ID: -1, KeepData: true}); released <- err }()
	if err := within(t, held, "held write after the release"); err == nil {
		t.Fatal("a write held when the paused device was released succeeded")
	} else {
		t.Logf("held write after the release: %v", err)
	}
	if err := within(t, released, "del of the paused device"); err != nil {
		t.Fatal(err)
	}
	for lba, want := range []byte{1, 2, 0} {
		if got := readStore(t, d, "a", int64(lba)); got != want {
			t.Fatalf("block %d holds %d in the store, want %d", lba, got, want)
		}
	}
}

// On the real driver: a daemon stopped while a device is paused does not
// hang (the device's queues wait for their requests); the held write is
// done by the next daemon, which takes the device over.
func TestRealCloseWhilePaused(t *testing.T) {
	dir := needRealUblk(t)
	d, err := Open(Options{Store: dir, Socket: filepath.Join(filepath.Dir(dir), "s.sock")}) // leaves the kernel devices
	if err != nil {
		t.Fatal(err)
	}
	path := realAdd(t, d, "a", 16<<20)
	w := newDirectWriter(t, path)
	if err := d.Pause("a"); err != nil {
		d.Close()
		t.Fatal(err)
	}
	held := w.write(5, 7)
	stillWaiting(t, held, "a write to the paused device")
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	if err := within(t, closed, "Close of a daemon with a paused device"); err != nil {
		t.Fatal(err)
	}
	d = openReal(t, dir) // takes the device over; StopDevices: removes it at Close
	defer d.Close()
	if err := within(t, held, "held write after the next daemon took over"); err != nil {
		t.Fatalf("held write: %v", err)
	}
	if got := readStore(t, d, "a", 5); got != 7 {
		t.Fatalf("block 5 holds %d, want 7", got)
	}
}

// On the real driver: while /dev/ublkbN is held open its pages stay in the
// kernel's cache, so a change made in the store underneath it is not seen
// by buffered reads until invalidate drops them.
func TestRealInvalidate(t *testing.T) {
	dir := needRealUblk(t)
	d := openReal(t, dir)
	defer d.Close()
	path := realAdd(t, d, "a", 16<<20)
	w := newDirectWriter(t, path)
	if err := within(t, w.write(0, 'A'), "write"); err != nil {
		t.Fatal(err)
	}
	holder, err := os.Open(path) // keeps the cache: the last close would drop it
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	read := func() byte {
		b := make([]byte, 4096)
		if _, err := holder.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return b[0]
	}
	if got := read(); got != 'A' {
		t.Fatalf("read %q", got)
	}
	dev, err := d.eng.Device("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dev.WriteAt(bytes.Repeat([]byte{'B'}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 'A' {
		t.Skipf("the kernel did not keep its cached page (read %q): nothing to drop", got)
	}
	if err := d.Invalidate("a"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != 'B' {
		t.Fatalf("after invalidate read %q, want the store's B", got)
	}
}
