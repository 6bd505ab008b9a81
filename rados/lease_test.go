//go:build rados

package rados

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// newLeaseObject makes the object a lease lives on (a device header).
func newLeaseObject(t *testing.T, c *Conn, oid string) {
	t.Helper()
	if err := c.io.WriteFull(oid, []byte("device header")); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseOneHolder(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 20*time.Second), testConn(t, ns, 20*time.Second)
	newLeaseObject(t, a, "bh.dev.vm1")
	la, lb := a.Lease("bh.dev.vm1", "host-1"), b.Lease("bh.dev.vm1", "host-2")
	if err := la.Acquire(); err != nil {
		t.Fatal(err)
	}
	if err := la.Acquire(); err != nil { // again: still ours
		t.Fatalf("second acquire by the holder: %v", err)
	}
	if err := lb.Acquire(); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("second holder: %v, want ErrLeaseHeld", err)
	}
	hs, err := lb.Holders()
	if err != nil || len(hs) != 1 || hs[0].Cookie != "host-1" || hs[0].Addr == "" {
		t.Fatalf("holders: %+v %v", hs, err)
	}
	if addr, _ := a.Addr(); hs[0].Addr != addr {
		t.Logf("holder address %q, host 1's client address %q", hs[0].Addr, addr)
	}
	// Writes that assert the lease: the holder's land, the other's do not.
	if err := la.Write([]byte("journal record 1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := lb.Write([]byte("XXXXXXX"), 0); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("write by a non-holder: %v, want ErrNotHeld", err)
	}
	// The same cookie on another client is another holder.
	if err := b.Lease("bh.dev.vm1", "host-1").Write([]byte("XXXXXXX"), 0); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("write by another client with the holder's cookie: %v, want ErrNotHeld", err)
	}
	buf := make([]byte, 16)
	if n, err := a.io.Read("bh.dev.vm1", buf, 0); err != nil || string(buf[:n]) != "journal record 1" {
		t.Fatalf("object holds %q (%v)", buf[:n], err)
	}
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	if err := la.Release(); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("second release: %v, want ErrNotHeld", err)
	}
	if err := la.Write([]byte("late"), 0); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("write after release: %v, want ErrNotHeld", err)
	}
	if err := lb.Acquire(); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if err := lb.Write([]byte("journal record 2"), 0); err != nil {
		t.Fatal(err)
	}
}

// A holder that stopped answering is fenced: blocklisted, its lease
// broken and taken. Its later writes, with or without the lease, are
// refused.
func TestLeaseFenceCutOffHolder(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 5*time.Second), testConn(t, ns, 20*time.Second)
	newLeaseObject(t, b, "bh.dev.vm2")
	la, lb := a.Lease("bh.dev.vm2", "host-1"), b.Lease("bh.dev.vm2", "host-2")
	if err := la.Acquire(); err != nil {
		t.Fatal(err)
	}
	pa, err := a.NewPack(1, 1) // host 1 also has a pack open
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.Acquire(); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("%v, want ErrLeaseHeld", err)
	}
	hs, err := lb.Holders()
	if err != nil || len(hs) != 1 {
		t.Fatalf("holders %+v %v", hs, err)
	}
	start := time.Now()
	if err := lb.Fence(hs[0]); err != nil {
		t.Fatal(err)
	}
	t.Logf("fence and take-over: %v", time.Since(start))
	if err := lb.Write([]byte("new holder"), 0); err != nil {
		t.Fatal(err)
	}
	err = la.Write([]byte("late write"), 0)
	if !errors.Is(err, ErrFenced) && !errors.Is(err, ErrNotHeld) {
		t.Fatalf("fenced holder's write: %v, want ErrFenced or ErrNotHeld", err)
	}
	t.Logf("fenced holder's lease write: %v", err)
	_, err = pa.Append([][]byte{testKey(1)}, randBlocks(1))
	if err == nil {
		t.Fatal("fenced host's pack append succeeded")
	}
	t.Logf("fenced host's pack append: %v", err)
	buf := make([]byte, 10)
	if n, err := b.io.Read("bh.dev.vm2", buf, 0); err != nil || string(buf[:n]) != "new holder" {
		t.Fatalf("object holds %q (%v)", buf[:n], err)
	}
	if st, err := b.ReadPackState(pa.ID()); err != nil || len(st.Keys) != 0 || st.Size != 0 {
		t.Fatalf("the fenced host's pack changed: %+v %v", st, err)
	}
}

// A hand-over: the holder flushes and releases when asked, the asker
// takes the lease; the old holder's writes are refused afterwards.
func TestLeaseHandover(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 20*time.Second), testConn(t, ns, 20*time.Second)
	newLeaseObject(t, a, "bh.dev.vm3")
	la, lb := a.Lease("bh.dev.vm3", "host-1"), b.Lease("bh.dev.vm3", "host-2")
	if err := la.Acquire(); err != nil {
		t.Fatal(err)
	}
	var flushes atomic.Int32
	h, err := la.ServeHandover(func() error { flushes.Add(1); return la.Write([]byte("flushed"), 0) })
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	start := time.Now()
	if err := lb.RequestHandover(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("hand-over: %v", time.Since(start))
	if flushes.Load() != 1 {
		t.Fatalf("holder flushed %d times", flushes.Load())
	}
	if err := la.Write([]byte("late"), 0); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("old holder's write after hand-over: %v, want ErrNotHeld", err)
	}
	buf := make([]byte, 7)
	if n, err := b.io.Read("bh.dev.vm3", buf, 0); err != nil || string(buf[:n]) != "flushed" {
		t.Fatalf("object holds %q (%v)", buf[:n], err)
	}
	// Asking again, as the holder, is a no-op.
	if err := lb.RequestHandover(time.Second); err != nil {
		t.Fatal(err)
	}
}

// A holder whose flush fails keeps the lease and says why.
func TestLeaseHandoverRefused(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 20*time.Second), testConn(t, ns, 20*time.Second)
	newLeaseObject(t, a, "bh.dev.vm4")
	la, lb := a.Lease("bh.dev.vm4", "host-1"), b.Lease("bh.dev.vm4", "host-2")
	if err := la.Acquire(); err != nil {
		t.Fatal(err)
	}
	h, err := la.ServeHandover(func() error { return errors.New("disk on fire") })
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	if err := lb.RequestHandover(10 * time.Second); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("hand-over with a failing flush: %v, want ErrLeaseHeld", err)
	}
	if err := la.Write([]byte("still mine"), 0); err != nil {
		t.Fatal(err)
	}
}

func isNotHeld(err error) bool { return errors.Is(err, ErrNotHeld) }

// A device handed over while its holder writes: the holder's flush stops
// its writer after the write in flight, the new holder goes on from the
// last record; every record lands once, none is lost, and the old holder
// writes nothing after it let go.
func TestLeaseHandoverWhileWriting(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 20*time.Second), testConn(t, ns, 20*time.Second)
	newLeaseObject(t, a, "bh.dev.vm5")
	la, lb := a.Lease("bh.dev.vm5", "host-1"), b.Lease("bh.dev.vm5", "host-2")
	if err := la.Acquire(); err != nil {
		t.Fatal(err)
	}
	// record n of host h: n in the low 56 bits, h in the top byte
	rec := func(n uint64, h byte) []byte { return binary.LittleEndian.AppendUint64(nil, n|uint64(h)<<56) }
	var stop atomic.Bool
	done := make(chan struct{})
	var lastA atomic.Uint64 // the last record the old holder had acknowledged
	go func() {
		defer close(done)
		for n := uint64(1); !stop.Load(); n++ {
			if err := la.Write(rec(n, 1), n*8); err != nil {
				t.Errorf("holder's write %d: %v", n, err)
				return
			}
			lastA.Store(n)
		}
	}()
	t.Cleanup(func() { stop.Store(true); <-done })
	h, err := la.ServeHandover(func() error {
		stop.Store(true)
		<-done // the write in flight is acknowledged or failed
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	for deadline := time.Now().Add(10 * time.Second); lastA.Load() < 50; { // let it write a while
		if time.Now().After(deadline) || t.Failed() {
			t.Fatalf("the holder wrote %d records", lastA.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := lb.RequestHandover(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	next := lastA.Load() + 1
	if err := lb.Write(rec(next, 2), next*8); err != nil {
		t.Fatal(err)
	}
	t.Logf("hand-over pause with a writer (request to the new holder's first write): %v, after %d records", time.Since(start), next-1)
	for n := next + 1; n < next+20; n++ {
		if err := lb.Write(rec(n, 2), n*8); err != nil {
			t.Fatal(err)
		}
	}
	if err := la.Write(rec(999, 1), 999*8); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("old holder's write after the hand-over: %v, want ErrNotHeld", err)
	}
	data, err := b.ReadAll("bh.dev.vm5")
	if err != nil {
		t.Fatal(err)
	}
	last := next + 19
	if uint64(len(data)) != (last+1)*8 {
		t.Fatalf("object of %d bytes, want records 1..%d", len(data), last)
	}
	final := lastA.Load() // after the hand-over: must not have moved
	if final != next-1 {
		t.Fatalf("the old holder acknowledged record %d after the new holder went on from %d", final, next)
	}
	for n := uint64(1); n <= last; n++ {
		want := n | 1<<56
		if n >= next {
			want = n | 2<<56
		}
		if got := binary.LittleEndian.Uint64(data[n*8:]); got != want {
			t.Fatalf("record %d holds %#x, want %#x", n, got, want)
		}
	}
}

// A fenced holder stops watching its lease's object: Stop returns even
// though the unwatch is refused (go-ceph then never closes the watch's
// event channel), and so does the client's Close (librados waits for a
// watch error callback go-ceph blocks until its error is taken).
// tests/ceph/hosts found a fenced host's import hung for good in
// Device.Close, waiting for that channel.
func TestHandoverStopWhenFenced(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 5*time.Second), testConn(t, ns, 20*time.Second)
	newLeaseObject(t, b, "bh.dev.vm9")
	la, lb := a.Lease("bh.dev.vm9", "host-1"), b.Lease("bh.dev.vm9", "host-2")
	if err := la.Acquire(); err != nil {
		t.Fatal(err)
	}
	h, err := la.Requests(func() string { return "busy" })
	if err != nil {
		t.Fatal(err)
	}
	hs, err := lb.Holders()
	if err != nil || len(hs) != 1 {
		t.Fatalf("holders %+v %v", hs, err)
	}
	if err := lb.Fence(hs[0]); err != nil {
		t.Fatal(err)
	}
	if err := la.Write([]byte("late"), 0); err == nil {
		t.Fatal("the fenced holder's write went through")
	}
	stopped := make(chan error, 1)
	go func() {
		err := h.Stop()
		a.Close() // librados' shutdown waits for its callbacks
		stopped <- err
	}()
	select {
	case err := <-stopped:
		t.Logf("stop of the fenced holder's watch: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Stop of a fenced holder's watch, then its client's Close, did not return in a minute")
	}
}
