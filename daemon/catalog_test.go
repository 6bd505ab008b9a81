package daemon

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"blockhash/engine"
)

func block(b byte) []byte { return bytes.Repeat([]byte{b}, engine.BlockSize) }

func readBlock(t *testing.T, k *fakeKernel, id int, off int64) byte {
	t.Helper()
	got := make([]byte, engine.BlockSize)
	if _, err := k.backend(id).ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	return got[0]
}

// A snapshot of a served device is taken while it serves; served as
// DEV@SNAP it is read-only (implied), holds what was written before it,
// and refuses writes with EROFS.
func TestSnapshotWhileServing(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 0}); err != nil {
		t.Fatal(err)
	}
	b := k.backend(0)
	b.WriteAt(block(1), 0)
	if resp := d.do(Request{Op: "snapshot", Name: "a", Snap: "s"}); resp.Error != "" {
		t.Fatal(resp.Error)
	}
	if _, err := b.WriteAt(block(2), 0); err != nil {
		t.Fatalf("the device stopped serving after the snapshot: %v", err)
	}
	if _, err := d.Add(Request{Name: "a@nope", ID: -1}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "blockhash snapshot a nope") {
		t.Fatalf("add of a missing snapshot: %v", err)
	}
	info, err := d.Add(Request{Name: "a@s", ID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !info.ReadOnly || !k.devs[1].ro {
		t.Fatalf("snapshot not served read-only: %+v, kernel read-only %v", info, k.devs[1].ro)
	}
	if got := readBlock(t, k, 1, 0); got != 1 {
		t.Fatalf("snapshot reads %d, want 1", got)
	}
	if got := readBlock(t, k, 0, 0); got != 2 {
		t.Fatalf("device reads %d, want 2", got)
	}
	var errno syscall.Errno
	if _, err := k.backend(1).WriteAt(block(3), 0); !errors.As(err, &errno) || errno != syscall.EROFS {
		t.Fatalf("write to the snapshot: %v, want EROFS", err)
	}
	if got := readBlock(t, k, 1, 0); got != 1 {
		t.Fatalf("snapshot reads %d after a refused write, want 1", got)
	}
}

// add --read-only serves any device read-only; the daemon remembers it
// across restarts, whether the kernel device is taken over or made anew.
func TestReadOnlyRemembered(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(map[bool]string{false: "recovered", true: "re-created"}[stop], func(t *testing.T) {
			dir, k := setup(t)
			d := open(t, dir, k)
			if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 0}); err != nil {
				t.Fatal(err)
			}
			k.backend(0).WriteAt(block(5), 0)
			if _, err := d.Del(Request{Name: "a", KeepData: true}); err != nil {
				t.Fatal(err)
			}
			info, err := d.Add(Request{Name: "a", ID: 0, ReadOnly: true})
			if err != nil || !info.ReadOnly || !k.devs[0].ro {
				t.Fatalf("add --read-only: %+v %v", info, err)
			}
			d.o.StopDevices = stop
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d = open(t, dir, k)
			defer d.Close()
			l := d.List()
			if len(l) != 1 || !l[0].ReadOnly || l[0].State != "running" || !k.devs[0].ro {
				t.Fatalf("after restart: %+v", l)
			}
			if _, err := k.backend(0).WriteAt(block(6), 0); !errors.Is(err, syscall.EROFS) {
				t.Fatalf("write after restart: %v, want EROFS", err)
			}
			if got := readBlock(t, k, 0, 0); got != 5 {
				t.Fatalf("reads %d, want 5", got)
			}
		})
	}
}

// Snapshot, clone, diff, rollback and delete through the request handler
// (the control socket's switch).
func TestCatalogOps(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 0}); err != nil {
		t.Fatal(err)
	}
	b := k.backend(0)
	b.WriteAt(block(1), 0)
	must := func(r Request) Response {
		t.Helper()
		resp := d.do(r)
		if resp.Error != "" {
			t.Fatalf("%s: %s", r.Op, resp.Error)
		}
		return resp
	}
	must(Request{Op: "snapshot", Name: "a", Snap: "s"})
	b.WriteAt(block(2), 3*engine.BlockSize)
	must(Request{Op: "clone", Name: "a@s", Target: "c"})
	resp := must(Request{Op: "diff", Name: "a@s", Target: "a"})
	if want := []engine.Range{{Start: 3, Blocks: 1}}; !reflect.DeepEqual(resp.Ranges, want) {
		t.Fatalf("diff: %+v, want %+v", resp.Ranges, want)
	}
	if resp := must(Request{Op: "diff", Name: "a@s", Target: "c"}); len(resp.Ranges) != 0 {
		t.Fatalf("a clone differs from its source: %+v", resp.Ranges)
	}
	// Roll back once a is no longer served.
	if _, err := d.Del(Request{Name: "a", KeepData: true}); err != nil {
		t.Fatal(err)
	}
	must(Request{Op: "rollback", Name: "a", Snap: "s"})
	if resp := must(Request{Op: "diff", Name: "a@s", Target: "a"}); len(resp.Ranges) != 0 {
		t.Fatalf("after the rollback: %+v", resp.Ranges)
	}
	must(Request{Op: "delete", Name: "a", Recursive: true})
	if got := d.eng.Devices(); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("after deleting a: %v", got)
	}
	// The clone still reads its source's data.
	if _, err := d.Add(Request{Name: "c", ID: 4}); err != nil {
		t.Fatal(err)
	}
	if got := readBlock(t, k, 4, 0); got != 1 {
		t.Fatalf("clone reads %d after its source was deleted, want 1", got)
	}
}

// Rolling back or deleting what the daemon serves (or remembers) is
// refused with one line that says what to do, and changes nothing.
func TestCatalogRefusals(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	for _, n := range []string{"a", "b", "c", "st"} {
		if _, err := d.eng.CreateDevice(n, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := d.eng.Snapshot(n, "s"); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range []string{"a", "a@s", "c@s", "st"} {
		if _, err := d.Add(Request{Name: n, ID: i}); err != nil {
			t.Fatal(err)
		}
	}
	// st is listed but stopped (its kernel device gone)
	k.mu.Lock()
	k.devs[3].once.Do(func() { close(k.devs[3].done) })
	k.mu.Unlock()
	tests := []struct {
		name string
		r    Request
		want error
		msg  string // in the error
	}{
		{"rollback served", Request{Op: "rollback", Name: "a", Snap: "s"}, ErrInUse, "blockhash del a --keep-data"},
		{"rollback stopped", Request{Op: "rollback", Name: "st", Snap: "s"}, ErrInUse, "blockhash del st --keep-data"},
		{"delete served", Request{Op: "delete", Name: "a", Recursive: true}, ErrInUse, "blockhash del a --keep-data"},
		{"delete served snapshot", Request{Op: "delete", Name: "a@s"}, ErrInUse, "blockhash del a@s --keep-data"},
		{"delete device of a served snapshot", Request{Op: "delete", Name: "c", Recursive: true}, ErrInUse, "blockhash del c@s --keep-data"},
		{"delete with snapshots", Request{Op: "delete", Name: "b"}, engine.ErrBusy, "recursive"},
		{"rollback a snapshot", Request{Op: "rollback", Name: "b@s", Snap: "s"}, ErrInvalid, ""},
		{"rollback to nothing", Request{Op: "rollback", Name: "b", Snap: "nope"}, engine.ErrNotFound, ""},
		{"snapshot without a name", Request{Op: "snapshot", Name: "b"}, ErrInvalid, ""},
		{"snapshot of a snapshot", Request{Op: "snapshot", Name: "b@s", Snap: "t"}, engine.ErrInvalid, ""},
		{"snapshot bad name", Request{Op: "snapshot", Name: "b", Snap: "../x"}, engine.ErrInvalid, ""},
		{"snapshot exists", Request{Op: "snapshot", Name: "b", Snap: "s"}, engine.ErrExists, ""},
		{"clone without a target", Request{Op: "clone", Name: "b"}, ErrInvalid, ""},
		{"clone onto a device", Request{Op: "clone", Name: "b", Target: "a"}, engine.ErrExists, ""},
		{"clone of nothing", Request{Op: "clone", Name: "nope", Target: "x"}, engine.ErrNotFound, ""},
		{"delete nothing", Request{Op: "delete", Name: "nope"}, engine.ErrNotFound, ""},
		{"delete without a name", Request{Op: "delete"}, ErrInvalid, ""},
		{"diff one", Request{Op: "diff", Name: "b"}, ErrInvalid, ""},
		{"diff of nothing", Request{Op: "diff", Name: "b", Target: "nope"}, engine.ErrNotFound, ""},
	}
	devs, served := d.eng.Devices(), d.List()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			switch tc.r.Op {
			case "snapshot":
				err = d.Snapshot(tc.r)
			case "clone":
				err = d.Clone(tc.r)
			case "rollback":
				err = d.Rollback(tc.r)
			case "delete":
				err = d.DeleteVolume(tc.r)
			case "diff":
				_, err = d.Diff(tc.r)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
			if got := d.eng.Devices(); !reflect.DeepEqual(got, devs) {
				t.Fatalf("store now %v, was %v", got, devs)
			}
			if got := d.List(); len(got) != len(served) {
				t.Fatalf("served now %+v", got)
			}
		})
	}
}

// del without --keep-data of a served device that has snapshots is
// refused before the device stops (it used to stop serving it, then fail
// to delete it).
func TestDelKeepsDeviceWithSnapshots(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if _, err := d.Add(Request{Name: "a", Size: 1 << 20, ID: 0}); err != nil {
		t.Fatal(err)
	}
	if err := d.eng.Snapshot("a", "s"); err != nil {
		t.Fatal(err)
	}
	_, err := d.Del(Request{Name: "a", ID: -1})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "blockhash delete a --recursive") {
		t.Fatalf("del of a device with snapshots: %v", err)
	}
	if l := d.List(); len(l) != 1 || l[0].State != "running" || !k.Exists(0) {
		t.Fatalf("the device stopped: %+v", l)
	}
	if got := d.eng.Devices(); !reflect.DeepEqual(got, []string{"a", "a@s"}) {
		t.Fatalf("store now %v", got)
	}
	// del of the snapshot itself, when served, deletes it.
	if _, err := d.Add(Request{Name: "a@s", ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Del(Request{Name: "a@s", ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Del(Request{Name: "a", ID: -1}); err != nil {
		t.Fatal(err)
	}
	if got := d.eng.Devices(); len(got) != 0 {
		t.Fatalf("store now %v", got)
	}
}
