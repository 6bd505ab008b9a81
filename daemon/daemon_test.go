package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"blockhash/engine"
	"blockhash/ublk"
)

// fakeKernel stands in for ublk_drv: its devices outlive a daemon that
// dies without stopping them, as real ones do with user recovery.
type fakeKernel struct {
	mu        sync.Mutex
	devs      map[int]*fakeExport
	recovered int
	exported  int
	abandoned int
	// drain, if set, runs as an export stops or is abandoned: a real
	// device waits there for the backend calls in flight
	drain func()
	// flushedCaches counts buffer cache flushes (invalidate), by device id
	flushedCaches map[int]int
	// foreignDeleted counts deletions of foreign devices (never wanted)
	foreignDeleted int
}

type fakeExport struct {
	k    *fakeKernel
	id   int
	size int64
	lbs  int
	ro   bool // created read-only (ublk.Config.ReadOnly)
	b    ublk.Backend
	done chan struct{}
	once sync.Once
	// foreign: another live process serves it (see fakeKernel.addForeign)
	foreign bool
}

func (f *fakeExport) ID() int               { return f.id }
func (f *fakeExport) BlockPath() string     { return fmt.Sprintf("/dev/ublkb%d", f.id) }
func (f *fakeExport) Done() <-chan struct{} { return f.done }
func (f *fakeExport) Stop() error {
	if f.k.drain != nil {
		f.k.drain()
	}
	f.once.Do(func() { close(f.done) })
	f.k.mu.Lock()
	delete(f.k.devs, f.id)
	f.k.mu.Unlock()
	return nil
}

// FlushBufferCache counts the flushes of the kernel's cached pages.
func (f *fakeExport) FlushBufferCache() error {
	f.k.mu.Lock()
	defer f.k.mu.Unlock()
	if f.k.flushedCaches == nil {
		f.k.flushedCaches = map[int]int{}
	}
	f.k.flushedCaches[f.id]++
	return nil
}

// Abandon leaves the kernel device, as a daemon that exits or dies does.
func (f *fakeExport) Abandon() error {
	if f.k.drain != nil {
		f.k.drain()
	}
	f.once.Do(func() { close(f.done) })
	f.k.mu.Lock()
	f.k.abandoned++
	f.k.mu.Unlock()
	return nil
}

// addForeign makes kernel device id, served by another live process.
func (k *fakeKernel) addForeign(id int, size int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.devs[id] = &fakeExport{k: k, id: id, size: size, lbs: 512, done: make(chan struct{}), foreign: true}
}

func (k *fakeKernel) Export(cfg ublk.Config, b ublk.Backend) (Export, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id := cfg.ID
	if id < 0 {
		for id = 0; k.devs[id] != nil; id++ {
		}
	} else if k.devs[id] != nil {
		return nil, ublk.ErrExists
	}
	e := &fakeExport{k: k, id: id, size: cfg.Size, lbs: cfg.LogicalBlockSize, ro: cfg.ReadOnly, b: b, done: make(chan struct{})}
	k.devs[id] = e
	k.exported++
	return e, nil
}

func (k *fakeKernel) Recover(id int, b ublk.Backend) (Export, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	old := k.devs[id]
	if old == nil {
		return nil, ublk.ErrNoDevice
	}
	if old.foreign {
		return nil, ublk.ErrBusy
	}
	e := &fakeExport{k: k, id: id, size: old.size, lbs: old.lbs, ro: old.ro, b: b, done: make(chan struct{})}
	k.devs[id] = e
	k.recovered++
	return e, nil
}

func (k *fakeKernel) Lookup(id int) (KernelDevice, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.devs[id]
	if e == nil {
		return KernelDevice{}, ublk.ErrNoDevice
	}
	kd := KernelDevice{ID: id, State: ublk.StateQuiesced, Size: e.size, LBS: e.lbs}
	if e.foreign {
		kd.State, kd.ServerPID, kd.ServerAlive = ublk.StateLive, 4242, true
	}
	return kd, nil
}

func (k *fakeKernel) Exists(id int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.devs[id] != nil
}

func (k *fakeKernel) Delete(id int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if e := k.devs[id]; e != nil && e.foreign {
		k.foreignDeleted++
	}
	delete(k.devs, id)
	return nil
}

func (k *fakeKernel) Close() error { return nil }

func (k *fakeKernel) backend(id int) ublk.Backend {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.devs[id].b
}

func setup(t testing.TB) (string, *fakeKernel) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := engine.Create(dir, engine.Options{ExtentSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	return dir, &fakeKernel{devs: map[int]*fakeExport{}}
}

func open(t testing.TB, dir string, k *fakeKernel) *Daemon {
	t.Helper()
	d, err := Open(Options{Store: dir, Exporter: k, Socket: filepath.Join(filepath.Dir(dir), "s.sock"),
		Engine: engine.Options{CommitInterval: -1}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAddListDel(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	info, err := d.Add(Request{Name: "vm1", Size: 4 << 20, ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != "/dev/ublkb0" || info.State != "running" || info.Queues != 1 || info.Depth != 128 || info.LBS != 512 {
		t.Fatalf("add: %+v", info)
	}
	if _, err := d.Add(Request{Name: "vm2", Size: 4 << 20, ID: 5, Queues: 2, Depth: 64, LBS: 4096}); err != nil {
		t.Fatal(err)
	}
	b := k.backend(5)
	if _, err := b.WriteAt(bytes.Repeat([]byte{7}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	l := d.List()
	if len(l) != 2 || l[1].ID != 5 || l[1].Stats.DataBlocks != 2 {
		t.Fatalf("list: %+v", l)
	}
	if _, err := d.Del(Request{ID: 5}); err != nil {
		t.Fatal(err)
	}
	if k.Exists(5) {
		t.Fatal("kernel device still there after del")
	}
	if _, err := d.eng.Device("vm2"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("del without --keep-data kept the data: %v", err)
	}
	if _, err := d.Del(Request{Name: "vm1", KeepData: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.eng.Device("vm1"); err != nil {
		t.Fatalf("--keep-data lost the device: %v", err)
	}
	// Attach the kept device again, without a size.
	if _, err := d.Add(Request{Name: "vm1", ID: -1}); err != nil {
		t.Fatal(err)
	}
}

func TestAddErrorsChangeNothing(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 3}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		r    Request
		want error
	}{
		{"name served", Request{Name: "a", Size: 1 << 20, ID: -1}, ErrServed},
		{"id taken", Request{Name: "b", Size: 1 << 20, ID: 3}, ErrServed},
		{"no size for new", Request{Name: "b", ID: -1}, ErrInvalid},
		{"bad lbs", Request{Name: "b", Size: 1 << 20, ID: -1, LBS: 1024}, ErrInvalid},
		{"bad depth", Request{Name: "b", Size: 1 << 20, ID: -1, Depth: 5000}, ErrInvalid},
		{"bad name", Request{Name: "../x", Size: 1 << 20, ID: -1}, engine.ErrInvalid},
		{"size not a block multiple", Request{Name: "b", Size: 1000, ID: -1}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := d.Add(tc.r); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if got := d.eng.Devices(); len(got) != 1 {
				t.Fatalf("store devices now %v", got)
			}
		})
	}
	if _, err := d.Del(Request{Name: "nope", ID: -1}); !errors.Is(err, ErrNotServed) {
		t.Fatalf("del unknown: %v", err)
	}
	if _, err := d.Recover(9); !errors.Is(err, ErrNotServed) {
		t.Fatalf("recover unknown: %v", err)
	}
}

// A plain stop leaves the kernel devices for the next daemon, which takes
// them over by user recovery; with StopDevices they are removed and made
// afresh. Either way the written data survives (Close flushes).
func TestRestartBringsDevicesBack(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		stopDevices            bool
		exported, recovered    int
		kernelDeviceAfterClose bool
	}{
		{"keep devices", false, 1, 1, true},
		{"stop devices", true, 2, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, k := setup(t)
			d, err := Open(Options{Store: dir, Exporter: k, Socket: filepath.Join(filepath.Dir(dir), "s.sock"),
				Engine: engine.Options{CommitInterval: -1}, StopDevices: tc.stopDevices})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 2}); err != nil {
				t.Fatal(err)
			}
			// written, never flushed: Close must make it durable
			k.backend(2).WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if k.Exists(2) != tc.kernelDeviceAfterClose {
				t.Fatalf("kernel device present after Close: %v, want %v", k.Exists(2), tc.kernelDeviceAfterClose)
			}
			d = open(t, dir, k)
			defer d.Close()
			l := d.List()
			if len(l) != 1 || l[0].ID != 2 || l[0].State != "running" || k.exported != tc.exported || k.recovered != tc.recovered {
				t.Fatalf("after restart: %+v exported %d recovered %d", l, k.exported, k.recovered)
			}
			got := make([]byte, 4096)
			k.backend(2).ReadAt(got, 0)
			if got[0] != 1 {
				t.Fatal("data lost across a clean restart")
			}
		})
	}
}

// Kernel devices with a remembered number that are not ours are left
// alone: not recovered, not deleted; our device is listed as stopped.
func TestForeignKernelDeviceLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		foreign func(k *fakeKernel)
	}{
		{"served by a live process", func(k *fakeKernel) { k.addForeign(2, 1<<20) }},
		{"other size", func(k *fakeKernel) {
			k.addForeign(2, 2<<20)
			k.devs[2].foreign = false // its server is dead, but it is not our device
			k.devs[2].b = nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, k := setup(t)
			d := open(t, dir, k)
			d.Add(Request{Name: "a", Size: 1 << 20, ID: 2})
			d.Add(Request{Name: "b", Size: 1 << 20, ID: 3})
			// a clean stop with the devices removed, then another server takes id 2
			d.o.StopDevices = true
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			tc.foreign(k)
			theirs := k.devs[2]
			d = open(t, dir, k)
			l := d.List()
			if len(l) != 2 || l[0].ID != 2 || l[0].State != "stopped" || l[1].State != "running" {
				t.Fatalf("after restart: %+v", l)
			}
			if k.devs[2] != theirs || k.foreignDeleted != 0 || k.recovered != 0 {
				t.Fatalf("the foreign device was touched: recovered %d deleted %d", k.recovered, k.foreignDeleted)
			}
			if _, err := d.Recover(2); !errors.Is(err, ErrForeign) {
				t.Fatalf("recover onto a foreign device: %v", err)
			}
			if _, err := d.Del(Request{Name: "a", ID: -1}); err != nil {
				t.Fatal(err)
			}
			if k.devs[2] != theirs {
				t.Fatal("del of our stopped device deleted the foreign kernel device")
			}
			d.Close()
			if !theirs.foreign {
				return // a dead server's device: one of ours gone from the store may be cleared
			}
			// a device gone from the store: a live server's device with its number stays
			os.WriteFile(filepath.Join(dir, stateName), []byte(`{"version":1,"devices":[{"name":"gone","id":2,"queues":1,"depth":128,"logical_block_size":512}]}`), 0o600)
			d = open(t, dir, k)
			defer d.Close()
			if k.devs[2] != theirs {
				t.Fatal("forgetting a device gone from the store deleted the foreign kernel device")
			}
		})
	}
}

func TestCrashRecoversKernelDevice(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	d.Add(Request{Name: "a", Size: 1 << 20, ID: 4})
	b := k.backend(4)
	b.WriteAt(bytes.Repeat([]byte{9}, 4096), 4096)
	b.Flush()
	// The daemon dies: nothing is stopped, the kernel device stays.
	d.eng.Close()
	d = open(t, dir, k)
	defer d.Close()
	if k.recovered != 1 {
		t.Fatalf("recovered %d devices, want 1", k.recovered)
	}
	got := make([]byte, 4096)
	k.backend(4).ReadAt(got, 4096)
	if got[0] != 9 {
		t.Fatal("flushed data lost across a crash")
	}
	// A running device cannot be recovered again; a stopped one can.
	if _, err := d.Recover(4); !errors.Is(err, ErrServed) {
		t.Fatalf("recover of a running device: %v", err)
	}
	k.mu.Lock()
	k.devs[4].once.Do(func() { close(k.devs[4].done) })
	k.mu.Unlock()
	if info, err := d.Recover(4); err != nil || info.State != "running" {
		t.Fatalf("recover of a stopped device: %+v %v", info, err)
	}
}

func TestCorruptStateFile(t *testing.T) {
	dir, k := setup(t)
	os.WriteFile(filepath.Join(dir, stateName), []byte("{not json"), 0o600)
	if _, err := Open(Options{Store: dir, Exporter: k}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestSocket(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	sock := d.o.Socket
	c := Client{Socket: sock}
	if _, err := c.Do(Request{Op: "list"}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no daemon: %v", err)
	}
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() { served <- d.Serve(ctx) }()
	resp, err := c.Do(Request{Op: "add", Name: "x", Size: 1 << 20, ID: -1})
	if err != nil || len(resp.Devices) != 1 || resp.Devices[0].Path != "/dev/ublkb0" {
		t.Fatalf("add over the socket: %+v %v", resp, err)
	}
	if _, err := c.Do(Request{Op: "add", Name: "x", Size: 1 << 20, ID: -1}); err == nil {
		t.Fatal("duplicate add over the socket succeeded")
	}
	resp, err = c.Do(Request{Op: "stats"})
	if err != nil || resp.Stats == nil || resp.Stats.LogicalBytes != 1<<20 {
		t.Fatalf("stats: %+v %v", resp, err)
	}
	if _, err := c.Do(Request{Op: "bogus"}); err == nil {
		t.Fatal("unknown op accepted")
	}
	// A second daemon on the same socket is refused.
	d2 := &Daemon{o: Options{Socket: sock}}
	if err := d2.Listen(); !errors.Is(err, ErrRunning) {
		t.Fatalf("second listen: %v", err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// FuzzHandle feeds arbitrary bytes to the control socket's request handler
// (a daemon over the fake kernel): it never panics, always answers with one
// JSON response, and whatever it accepted leaves a state file that decodes
// and a device table within range.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{
		`{"op":"add","name":"a","size":1048576,"id":-1}`,
		`{"op":"add","name":"b","size":1048576,"id":3,"queues":2,"depth":64,"logical_block_size":4096}`,
		`{"op":"add","name":"c","size":-1,"id":-1}`,
		`{"op":"add","name":"../x","size":4096,"id":-1}`,
		`{"op":"add","name":"d","size":4096,"id":-7,"queues":65}`,
		`{"op":"del","name":"a"}`,
		`{"op":"del","id":3,"keep_data":true}`,
		`{"op":"del","all":true}`,
		`{"op":"recover","id":3}`,
		`{"op":"add","name":"a@s","id":-1}`,
		`{"op":"add","name":"b","id":-1,"read_only":true}`,
		`{"op":"snapshot","name":"a","snap":"s"}`,
		`{"op":"clone","name":"a@s","target":"c"}`,
		`{"op":"diff","name":"a@s","target":"a"}`,
		`{"op":"rollback","name":"a","snap":"s"}`,
		`{"op":"delete","name":"a","recursive":true}`,
		`{"op":"delete","name":"a@s"}`,
		`{"op":"pause","name":"a"}`, `{"op":"resume","name":"a"}`, `{"op":"invalidate","name":"a"}`,
		`{"op":"pause","name":"nope"}`, `{"op":"pause"}`,
		`{"op":"list"}`, `{"op":"stats"}`, `{"op":"ping"}`, `{"op":"bogus"}`,
		`{"op":"add"`, `[]`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	dir, k := setup(f)
	d, err := Open(Options{Store: dir, Exporter: k, Socket: filepath.Join(filepath.Dir(dir), "s.sock"),
		Engine: engine.Options{CommitInterval: -1}})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close()
	ln, err := net.Listen("unix", filepath.Join(f.TempDir(), "fuzz.sock"))
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, req []byte) {
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { d.handle(srv); close(done) }()
		c.Write(req)
		c.(*net.UnixConn).CloseWrite()
		var resp Response
		if err := json.NewDecoder(c).Decode(&resp); err != nil {
			t.Fatalf("no JSON response to %q: %v", req, err)
		}
		<-done
		devs, err := loadState(dir)
		if err != nil {
			t.Fatalf("state after %q: %v", req, err)
		}
		if len(devs) != len(d.List()) {
			t.Fatalf("state lists %d devices, the daemon %d", len(devs), len(d.List()))
		}
	})
}

// With QueueProcs, GOMAXPROCS follows the queues served.
func TestQueueProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	dir, k := setup(t)
	d, err := Open(Options{Store: dir, Exporter: k, Socket: filepath.Join(filepath.Dir(dir), "s.sock"),
		Engine: engine.Options{CommitInterval: -1}, QueueProcs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	base := runtime.GOMAXPROCS(0)
	for _, step := range []struct {
		do   func() error
		want int
	}{
		{func() error { _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: -1, Queues: 3}); return err }, base + 3},
		{func() error { _, err := d.Add(Request{Name: "b", Size: 1 << 20, ID: -1}); return err }, base + 4},
		{func() error { _, err := d.Del(Request{Name: "a", ID: -1}); return err }, base + 1},
		{func() error { _, err := d.Del(Request{All: true, ID: -1}); return err }, base},
	} {
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		if got := runtime.GOMAXPROCS(0); got != step.want {
			t.Fatalf("GOMAXPROCS %d, want %d", got, step.want)
		}
	}
}

// A served device whose map is damaged is offline after a restart: the
// daemon keeps it listed and remembered and leaves its kernel device alone
// (a guest waits instead of losing its disk); the other devices serve.
func TestDamagedMapDeviceStaysRemembered(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	for i, name := range []string{"a", "b"} {
		if _, err := d.Add(Request{Name: name, Size: 1 << 20, ID: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil { // keeps the kernel devices
		t.Fatal(err)
	}
	// Damage a's map header.
	path := filepath.Join(dir, "devices", "1.vol") // a: the header and its copy
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XX"), 40)
	f.WriteAt([]byte("XX"), 4096+40)
	f.Close()
	d = open(t, dir, k)
	l := d.List()
	if len(l) != 2 || l[0].Name != "a" || l[0].State != "offline" || l[1].State != "running" {
		t.Fatalf("after restart: %+v", l)
	}
	if !k.Exists(0) {
		t.Fatal("the damaged device's kernel device was deleted")
	}
	d.Close()
	// Still remembered by the next daemon.
	d = open(t, dir, k)
	defer d.Close()
	if l := d.List(); len(l) != 2 || l[0].State != "offline" {
		t.Fatalf("second restart: %+v", l)
	}
}
