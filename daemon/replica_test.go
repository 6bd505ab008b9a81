package daemon

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"blockhash/engine"
	"blockhash/replica"
)

// serving opens a daemon on a new store and serves its socket.
func serving(t testing.TB) (*Daemon, Client, *fakeKernel) {
	t.Helper()
	dir, k := setup(t)
	d := open(t, dir, k)
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		d.Close()
	})
	return d, Client{Socket: filepath.Join(filepath.Dir(dir), "s.sock")}, k
}

// daemonTransfer runs a send on a and a receive on b, both through their
// daemons, relayed as the CLI does.
func daemonTransfer(t *testing.T, a Client, send Request, b Client, recv Request) (replica.Stats, replica.Stats, error, error) {
	t.Helper()
	ca, err := a.Stream(send)
	if err != nil {
		return replica.Stats{}, replica.Stats{}, err, nil
	}
	defer ca.Close()
	cb, err := b.Stream(recv)
	if err != nil {
		return replica.Stats{}, replica.Stats{}, nil, err
	}
	defer cb.Close()
	p1r, p1w := io.Pipe()
	p2r, p2w := io.Pipe()
	type res struct {
		st  replica.Stats
		err error
	}
	bres := make(chan res, 1)
	go func() {
		st, err := replica.Relay(cb, p1r, p2w, cb.CloseWrite)
		p2w.Close()
		p1r.Close()
		bres <- res{st, err}
	}()
	sa, ea := replica.Relay(ca, p2r, p1w, ca.CloseWrite)
	p1w.Close()
	p2r.Close()
	r := <-bres
	return sa, r.st, ea, r.err
}

func TestDaemonSendReceive(t *testing.T) {
	da, ca, ka := serving(t)
	db, cb, kb := serving(t)
	if _, err := da.Add(Request{Name: "vm", Size: 8 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte("replica!"), (8<<20)/8)
	for i := 0; i < len(img); i += 4096 {
		img[i] = byte(i / 4096) // distinct blocks
	}
	if _, err := ka.backend(0).WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Do(Request{Op: "snapshot", Name: "vm", Snap: "s1", ID: -1}); err != nil {
		t.Fatal(err)
	}
	// A send must name a snapshot.
	if _, err := ca.Stream(Request{Op: "send", Name: "vm", ID: -1}); !errors.As(err, new(*RemoteError)) {
		t.Fatalf("send of a device: %v", err)
	}
	sa, sb, ea, eb := daemonTransfer(t, ca, Request{Op: "send", Name: "vm@s1", ID: -1}, cb, Request{Op: "receive", Name: "vm", Serve: true, ID: -1})
	if ea != nil || eb != nil {
		t.Fatalf("send %v, receive %v", ea, eb)
	}
	if sa.BlocksSent != 256 || sb.BlocksSent != 256 || sa.BlocksLinked != 2048-256 || sa.WireOut != sb.WireIn { // 256 distinct blocks
		t.Fatalf("stats: sender %+v receiver %+v", sa, sb)
	}
	// B serves the replica (Serve), with A's content.
	got := make([]byte, len(img))
	if _, err := kb.backend(0).ReadAt(got, 0); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("served replica differs (%v)", err)
	}
	// A receive into a served device is refused unless live.
	if _, err := cb.Stream(Request{Op: "receive", Name: "vm", ID: -1}); !errors.As(err, new(*RemoteError)) {
		t.Fatalf("receive into a served device: %v", err)
	}
	if err := db.checkStream(Request{Op: "receive", Name: "vm"}); !errors.Is(err, ErrInUse) {
		t.Fatalf("receive into a served device: %v, want ErrInUse", err)
	}
	// Live: A changes, snapshot s2, incremental into the served replica.
	if _, err := ka.backend(0).WriteAt(bytes.Repeat([]byte{9}, 4096), 4096*5); err != nil {
		t.Fatal(err)
	}
	copy(img[4096*5:], bytes.Repeat([]byte{9}, 4096))
	if _, err := ca.Do(Request{Op: "snapshot", Name: "vm", Snap: "s2", ID: -1}); err != nil {
		t.Fatal(err)
	}
	sa, _, ea, eb = daemonTransfer(t, ca, Request{Op: "send", Name: "vm@s2", Auto: true, ID: -1}, cb, Request{Op: "receive", Name: "vm", Live: true, ID: -1})
	if ea != nil || eb != nil {
		t.Fatalf("live: send %v, receive %v", ea, eb)
	}
	if !sa.Incremental || sa.BlocksSent != 1 {
		t.Fatalf("live incremental stats %+v", sa)
	}
	if _, err := kb.backend(0).ReadAt(got, 0); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("served replica after the live receive differs (%v)", err)
	}
	rep, err := db.eng.Fsck(false)
	if err != nil || !rep.OK() {
		t.Fatalf("fsck B: %v %+v", err, rep)
	}
}

// TestNoDevicesDaemon: a daemon that serves no block devices (a replica
// host without ublk) refuses to add one and still receives replicas.
func TestNoDevicesDaemon(t *testing.T) {
	_, ca, ka := serving(t)
	dir, _ := setup(t)
	d, err := Open(Options{Store: dir, Exporter: NoDevices{}, Socket: filepath.Join(filepath.Dir(dir), "s.sock"),
		Engine: engine.Options{CommitInterval: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.Add(Request{Name: "vm", Size: 1 << 20, ID: -1}); !errors.Is(err, ErrNoDevices) {
		t.Fatalf("add on a no-devices daemon: %v", err)
	}
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Serve(ctx)
	cb := Client{Socket: filepath.Join(filepath.Dir(dir), "s.sock")}
	if _, err := ca.Do(Request{Op: "add", Name: "vm", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{3}, 1<<20)
	ka.backend(0).WriteAt(img, 0)
	if _, err := ca.Do(Request{Op: "snapshot", Name: "vm", Snap: "s", ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, _, ea, eb := daemonTransfer(t, ca, Request{Op: "send", Name: "vm@s", ID: -1}, cb, Request{Op: "receive", Name: "vm", ID: -1}); ea != nil || eb != nil {
		t.Fatalf("send %v, receive %v", ea, eb)
	}
	dev, err := d.eng.Device("vm")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(img))
	if _, err := dev.ReadAt(got, 0); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("replica differs (%v)", err)
	}
}

// TestAddGrows: add of a stored device with a larger --size grows it
// (a smaller one is refused, and so is a served device).
func TestAddGrows(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if _, err := d.Add(Request{Name: "vm", Size: 4 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.backend(0).WriteAt(bytes.Repeat([]byte{5}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(Request{Name: "vm", Size: 8 << 20, ID: -1}); !errors.Is(err, ErrServed) {
		t.Fatalf("grow of a served device: %v", err)
	}
	if _, err := d.Del(Request{Name: "vm", KeepData: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(Request{Name: "vm", Size: 2 << 20, ID: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("shrink: %v", err)
	}
	info, err := d.Add(Request{Name: "vm", Size: 8 << 20, ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 8<<20 {
		t.Fatalf("served at %d bytes after the grow", info.Size)
	}
	got := make([]byte, 8192)
	if _, err := k.backend(info.ID).ReadAt(got, 0); err != nil || got[0] != 5 || got[4096] != 0 {
		t.Fatalf("content after the grow (%v)", err)
	}
}

// A receive of a newer sync- snapshot deletes the older ones, but not one
// the daemon serves: that device would start failing its reads.
func TestReceiveKeepsServedSnapshot(t *testing.T) {
	da, ca, ka := serving(t)
	db, cb, kb := serving(t)
	if _, err := da.Add(Request{Name: "vm", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte{7}, 1<<20)
	if _, err := ka.backend(0).WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	for i, snap := range []string{"sync-1", "sync-2", "sync-3"} {
		if _, err := ca.Do(Request{Op: "snapshot", Name: "vm", Snap: snap, ID: -1}); err != nil {
			t.Fatal(err)
		}
		_, _, ea, eb := daemonTransfer(t, ca, Request{Op: "send", Name: "vm@" + snap, Auto: true, ID: -1}, cb, Request{Op: "receive", Name: "vm", ID: -1})
		if ea != nil || eb != nil {
			t.Fatalf("%s: send %v, receive %v", snap, ea, eb)
		}
		if i == 0 {
			// B serves its copy of sync-1 (read-only, as a snapshot is).
			if _, err := db.Add(Request{Name: "vm@sync-1", ID: -1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got := make([]byte, len(img))
	if _, err := kb.backend(0).ReadAt(got, 0); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("the served snapshot vm@sync-1 after newer receives: %v", err)
	}
	snaps, err := db.eng.Snapshots("vm")
	var names []string
	for _, s := range snaps {
		names = append(names, s.Name)
	}
	if err != nil || !slices.Equal(names, []string{"sync-1", "sync-3"}) {
		t.Fatalf("B's snapshots %v (%v), want sync-1 (served) and sync-3", names, err)
	}
}
