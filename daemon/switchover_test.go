package daemon

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveSocket runs d's control socket until the test ends.
func serveSocket(t *testing.T, d *Daemon) Client {
	t.Helper()
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return Client{Socket: d.o.Socket, Timeout: 30 * time.Second}
}

// oneLine fails unless err is a one-line error that contains want.
func oneLine(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want a one-line error with %q", err, want)
	}
}

func paused(t *testing.T, d *Daemon, name string) bool {
	t.Helper()
	for _, i := range d.List() {
		if i.Name == name {
			return i.Paused
		}
	}
	t.Fatalf("%s not listed", name)
	return false
}

// Through the socket: a paused device's requests wait while the daemon's
// other devices and its socket go on serving; resume lets them go on,
// with the data they wrote; del of a paused device fails them with EIO
// and removes it. Pausing what the daemon does not serve is a one-line
// error.
func TestPauseResumeDel(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	c := serveSocket(t, d)
	for i, name := range []string{"a", "b"} {
		if _, err := d.Add(Request{Name: name, Size: 1 << 20, ID: i}); err != nil {
			t.Fatal(err)
		}
	}
	oneLine(t, c.Pause("nope"), "no such served device")
	oneLine(t, c.Resume("nope"), "no such served device")
	oneLine(t, c.Pause(""), "invalid request")

	if err := c.Pause("a"); err != nil {
		t.Fatal(err)
	}
	if !paused(t, d, "a") || paused(t, d, "b") {
		t.Fatalf("list: %+v", d.List())
	}
	a := k.backend(0)
	held := make(chan error, 1)
	go func() { _, err := a.WriteAt(bytes.Repeat([]byte{5}, 4096), 0); held <- err }()
	stillWaiting(t, held, "a write to the paused device")

	// the rest of the daemon goes on
	if _, err := k.backend(1).WriteAt(bytes.Repeat([]byte{6}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(Request{Op: "add", Name: "c", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(Request{Op: "del", Name: "c", ID: -1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause("a"); err != nil { // again: idempotent
		t.Fatal(err)
	}
	stillWaiting(t, held, "a write to the paused device")

	if err := c.Resume("a"); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatalf("held write after resume: %v", err)
	}
	got := make([]byte, 4096)
	if _, err := a.ReadAt(got, 0); err != nil || got[0] != 5 {
		t.Fatalf("held write's data: %v %d", err, got[0])
	}
	if paused(t, d, "a") {
		t.Fatal("still listed paused after resume")
	}

	// release while paused
	if err := c.Pause("a"); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := a.WriteAt(bytes.Repeat([]byte{7}, 4096), 0); held <- err }()
	stillWaiting(t, held, "a write to the paused device")
	if _, err := c.Do(Request{Op: "del", Name: "a", ID: -1, KeepData: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-held:
		if !errors.Is(err, syscall.EIO) {
			t.Fatalf("held write after del: %v, want EIO", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held write still waits after del")
	}
	if k.Exists(0) {
		t.Fatal("kernel device of the released device still there")
	}
	oneLine(t, c.Pause("a"), "no such served device")
	// the device kept the content it had at the pause
	if _, err := d.Add(Request{Name: "a", ID: -1}); err != nil {
		t.Fatal(err)
	}
	id := -1
	for _, i := range d.List() {
		if i.Name == "a" {
			id = i.ID
		}
	}
	if _, err := k.backend(id).ReadAt(got, 0); err != nil || got[0] != 5 {
		t.Fatalf("after del of the paused device: %v, first byte %d, want 5", err, got[0])
	}
}

// A daemon that stops while a device is paused does not hang: the held
// requests go on to the store, and what they wrote is durable.
func TestCloseWhilePaused(t *testing.T) {
	for _, stopDevices := range []bool{false, true} {
		dir, k := setup(t)
		d := open(t, dir, k)
		d.o.StopDevices = stopDevices
		if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 0}); err != nil {
			t.Fatal(err)
		}
		if err := d.Pause("a"); err != nil {
			t.Fatal(err)
		}
		held := make(chan error, 1)
		go func() { _, err := k.backend(0).WriteAt(bytes.Repeat([]byte{3}, 4096), 0); held <- err }()
		stillWaiting(t, held, "a write to the paused device")
		var heldErr error
		k.drain = func() { heldErr = <-held } // as the real device waits for its requests
		closed := make(chan error, 1)
		go func() { closed <- d.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Close hangs on a paused device")
		}
		if heldErr != nil {
			t.Fatalf("held write: %v", heldErr)
		}
		k.drain = nil
		d = open(t, dir, k)
		got := make([]byte, 4096)
		k.backend(0).ReadAt(got, 0)
		d.Close()
		if got[0] != 3 {
			t.Fatalf("stop devices %v: the held write was lost", stopDevices)
		}
	}
}

// invalidate drops the kernel's cached pages of a running device; one the
// daemon does not serve, or lists as stopped, is a one-line error.
func TestInvalidate(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	c := serveSocket(t, d)
	if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 4}); err != nil {
		t.Fatal(err)
	}
	if err := c.Invalidate("a"); err != nil {
		t.Fatal(err)
	}
	if k.flushedCaches[4] != 1 {
		t.Fatalf("buffer cache flushes: %v", k.flushedCaches)
	}
	oneLine(t, c.Invalidate("nope"), "no such served device")
	k.mu.Lock()
	k.devs[4].once.Do(func() { close(k.devs[4].done) }) // the export ends
	k.mu.Unlock()
	oneLine(t, c.Invalidate("a"), "stopped")
	if k.flushedCaches[4] != 1 {
		t.Fatalf("buffer cache flushes: %v", k.flushedCaches)
	}
}

// A receive into a served device (a migration's destination, live) drops
// the kernel's cached pages of the device once its content is replaced;
// a receive that serves a new device has nothing to drop.
func TestLiveReceiveInvalidates(t *testing.T) {
	da, ca, ka := serving(t)
	_, cb, kb := serving(t)
	if _, err := da.Add(Request{Name: "vm", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	for i, snap := range []string{"s1", "s2"} {
		if _, err := ka.backend(0).WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 4096), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := ca.Do(Request{Op: "snapshot", Name: "vm", Snap: snap, ID: -1}); err != nil {
			t.Fatal(err)
		}
		recv := Request{Op: "receive", Name: "vm", Serve: true, ID: -1}
		if i > 0 {
			recv.Live = true
		}
		if _, _, ea, eb := daemonTransfer(t, ca, Request{Op: "send", Name: "vm@" + snap, Auto: true, ID: -1}, cb, recv); ea != nil || eb != nil {
			t.Fatalf("%s: send %v, receive %v", snap, ea, eb)
		}
		kb.mu.Lock()
		n := kb.flushedCaches[0]
		kb.mu.Unlock()
		if n != i {
			t.Fatalf("after receiving %s: %d buffer cache flushes, want %d", snap, n, i)
		}
	}
	got := make([]byte, 4096)
	if _, err := kb.backend(0).ReadAt(got, 0); err != nil || got[0] != 2 {
		t.Fatalf("replica: %v, first byte %d", err, got[0])
	}
}
