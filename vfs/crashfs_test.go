package vfs_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"blockhash/vfs"
)

func mustOpen(t *testing.T, c vfs.FS, name string, flag int) vfs.File {
	t.Helper()
	f, err := c.OpenFile(name, flag, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, f vfs.File, s string, off int64) {
	t.Helper()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}

// content returns the file's content, or "<none>" if it does not exist.
func content(t *testing.T, c vfs.FS, name string) string {
	t.Helper()
	b, err := vfs.ReadFile(c, name)
	if errors.Is(err, fs.ErrNotExist) {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const rw = os.O_RDWR | os.O_CREATE

func TestCrashFSDurability(t *testing.T) {
	tests := []struct {
		name string
		do   func(t *testing.T, c *vfs.CrashFS)
		want map[string]string // file -> content after a DropUnsynced crash
	}{
		{"create without dir sync is lost", func(t *testing.T, c *vfs.CrashFS) {
			f := mustOpen(t, c, "/d/a", rw)
			write(t, f, "hello", 0)
			must(t, f.Sync())
		}, map[string]string{"/d/a": "<none>"}},
		{"write without sync is lost", func(t *testing.T, c *vfs.CrashFS) {
			f := mustOpen(t, c, "/d/a", rw)
			must(t, c.SyncDir("/d"))
			write(t, f, "hello", 0)
		}, map[string]string{"/d/a": ""}},
		{"sync keeps the write", func(t *testing.T, c *vfs.CrashFS) {
			f := mustOpen(t, c, "/d/a", rw)
			must(t, c.SyncDir("/d"))
			write(t, f, "hello", 0)
			must(t, f.Sync())
			write(t, f, "HE", 0)
		}, map[string]string{"/d/a": "hello"}},
		{"rename without dir sync is undone", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("old")))
			f := mustOpen(t, c, "/d/b", rw)
			write(t, f, "new", 0)
			must(t, f.Sync())
			must(t, c.SyncDir("/d"))
			must(t, c.Rename("/d/b", "/d/a"))
		}, map[string]string{"/d/a": "old", "/d/b": "new"}},
		{"rename with dir sync holds", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("old")))
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("new")))
		}, map[string]string{"/d/a": "new", "/d/a.tmp": "<none>"}},
		{"remove without dir sync is undone", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("x")))
			must(t, c.Remove("/d/a"))
		}, map[string]string{"/d/a": "x"}},
		{"remove with dir sync holds", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("x")))
			must(t, c.Remove("/d/a"))
			must(t, c.SyncDir("/d"))
		}, map[string]string{"/d/a": "<none>"}},
		{"unsynced truncate is undone", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("abcdef")))
			f := mustOpen(t, c, "/d/a", os.O_RDWR)
			must(t, f.Truncate(2))
		}, map[string]string{"/d/a": "abcdef"}},
		{"synced truncate holds", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("abcdef")))
			f := mustOpen(t, c, "/d/a", os.O_RDWR)
			must(t, f.Truncate(2))
			must(t, f.Sync())
		}, map[string]string{"/d/a": "ab"}},
		{"O_TRUNC without sync is undone", func(t *testing.T, c *vfs.CrashFS) {
			must(t, vfs.WriteFileDurable(c, "/d/a", []byte("abc")))
			f := mustOpen(t, c, "/d/a", os.O_RDWR|os.O_TRUNC)
			write(t, f, "z", 0)
		}, map[string]string{"/d/a": "abc"}},
		{"allocate without sync is undone", func(t *testing.T, c *vfs.CrashFS) {
			f := mustOpen(t, c, "/d/a", rw)
			must(t, c.SyncDir("/d"))
			must(t, f.Allocate(0, 4096))
		}, map[string]string{"/d/a": ""}},
		{"sync after a removed name keeps nothing", func(t *testing.T, c *vfs.CrashFS) {
			f := mustOpen(t, c, "/d/a", rw)
			must(t, c.SyncDir("/d"))
			must(t, c.Remove("/d/a"))
			must(t, c.SyncDir("/d"))
			write(t, f, "x", 0)
			must(t, f.Sync())
		}, map[string]string{"/d/a": "<none>"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := vfs.NewCrashFS(1)
			c.SetMode(vfs.DropUnsynced)
			must(t, c.MkdirAll("/d", 0o700))
			tc.do(t, c)
			img := c.CrashClone()
			for name, want := range tc.want {
				if got := content(t, img, name); got != want {
					t.Errorf("%s after crash: %q, want %q", name, got, want)
				}
			}
		})
	}
}

// TestCrashFSTornWrite: with TearLast, the last unsynced write survives as a
// prefix ending on a sector boundary; earlier unsynced writes are lost.
func TestCrashFSTornWrite(t *testing.T) {
	old := bytes.Repeat([]byte{'o'}, 4096)
	seen := map[int]bool{}
	for seed := range uint64(200) {
		c := vfs.NewCrashFS(seed)
		must(t, c.MkdirAll("/d", 0o700))
		must(t, vfs.WriteFileDurable(c, "/d/a", old))
		f := mustOpen(t, c, "/d/a", os.O_RDWR)
		write(t, f, "EARLIER", 0) // unsynced, not the last: lost
		// The last write spans [100, 2100): sector boundaries at 512,
		// 1024, 1536, 2048, so it survives as [100, 100+k) with k in
		// {0, 412, 924, 1436, 1948, 2000}.
		write(t, f, string(bytes.Repeat([]byte{'n'}, 2000)), 100)
		got := []byte(content(t, c.CrashClone(), "/d/a"))
		if len(got) != len(old) || string(got[:7]) != "ooooooo" {
			t.Fatalf("seed %d: earlier unsynced write survived or size changed (%d)", seed, len(got))
		}
		k := 0
		for k < 2000 && got[100+k] == 'n' {
			k++
		}
		if !bytes.Equal(got[100+k:], old[100+k:]) || !bytes.Equal(got[:100], old[:100]) {
			t.Fatalf("seed %d: torn write is not a prefix", seed)
		}
		if k != 2000 && (100+k)%vfs.SectorSize != 0 && k != 0 {
			t.Fatalf("seed %d: write torn at %d, not a sector boundary", seed, 100+k)
		}
		seen[k] = true
	}
	for _, k := range []int{0, 412, 924, 1436, 1948, 2000} {
		if !seen[k] {
			t.Errorf("no crash kept %d bytes of the write (seen %v)", k, seen)
		}
	}
}

// TestCrashFSTornAppend: a torn write past the end grows the file only to
// the sectors that landed.
func TestCrashFSTornAppend(t *testing.T) {
	sizes := map[int]bool{}
	for seed := range uint64(100) {
		c := vfs.NewCrashFS(seed)
		must(t, c.MkdirAll("/d", 0o700))
		f := mustOpen(t, c, "/d/a", rw)
		must(t, c.SyncDir("/d"))
		write(t, f, string(bytes.Repeat([]byte{'x'}, 1200)), 0)
		sizes[len(content(t, c.CrashClone(), "/d/a"))] = true
	}
	for n := range sizes {
		if n != 0 && n != 512 && n != 1024 && n != 1200 {
			t.Fatalf("crash left a %d-byte file", n)
		}
	}
	if len(sizes) != 4 {
		t.Fatalf("sizes seen %v, want all of 0, 512, 1024, 1200", sizes)
	}
}

func TestCrashFSKeepPrefix(t *testing.T) {
	for seed := range uint64(50) {
		c := vfs.NewCrashFS(seed)
		c.SetMode(vfs.KeepPrefix)
		must(t, c.MkdirAll("/d", 0o700))
		f := mustOpen(t, c, "/d/a", rw)
		must(t, c.SyncDir("/d"))
		write(t, f, "a", 0)
		write(t, f, "b", 1)
		write(t, f, "c", 2)
		got := content(t, c.CrashClone(), "/d/a")
		switch got {
		case "", "a", "ab", "abc":
		default:
			t.Fatalf("seed %d: %q is not a prefix of the writes", seed, got)
		}
	}
}

func TestCrashFSCrashAfter(t *testing.T) {
	c := vfs.NewCrashFS(1)
	must(t, c.MkdirAll("/d", 0o700))
	f := mustOpen(t, c, "/d/a", rw)
	must(t, c.SyncDir("/d"))
	c.CrashAfter(2)
	write(t, f, "one", 0)
	must(t, f.Sync())
	if _, err := f.WriteAt([]byte("two"), 0); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("third op after arming: %v, want ErrCrashed", err)
	}
	if _, err := c.Stat("/d/a"); !errors.Is(err, vfs.ErrCrashed) {
		t.Fatalf("stat after the crash: %v, want ErrCrashed", err)
	}
	img := c.Crashed()
	if img == nil {
		t.Fatal("no crash image")
	}
	if got := content(t, img, "/d/a"); got != "one" {
		t.Fatalf("image holds %q, want %q", got, "one")
	}
	// The image is a live FS of its own.
	g := mustOpen(t, img, "/d/a", os.O_RDWR)
	write(t, g, "ONE", 0)
	if got := content(t, img, "/d/a"); got != "ONE" {
		t.Fatalf("image write: %q", got)
	}
}

func TestCrashFSFaults(t *testing.T) {
	c := vfs.NewCrashFS(1)
	must(t, c.MkdirAll("/d", 0o700))
	f := mustOpen(t, c, "/d/a", rw)
	c.SetFault(vfs.FailNth(2, syscall.EIO, vfs.OpSync))
	must(t, f.Sync())
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second sync: %v, want EIO", err)
	}
	must(t, f.Sync())
	c.SetFault(vfs.NoSpaceAfter(10))
	write(t, f, "0123456789", 0)
	if _, err := f.WriteAt([]byte("x"), 10); !vfs.IsNoSpace(err) {
		t.Fatalf("write past the space: %v, want ENOSPC", err)
	}
	if err := f.Allocate(0, 4096); !vfs.IsNoSpace(err) {
		t.Fatalf("allocate past the space: %v, want ENOSPC", err)
	}
	if n, _ := f.Size(); n != 10 {
		t.Fatalf("failed ops changed the size to %d", n)
	}
}

func TestCrashFSNamespace(t *testing.T) {
	c := vfs.NewCrashFS(1)
	must(t, c.MkdirAll("/d/sub", 0o700))
	mustOpen(t, c, "/d/a", rw)
	if _, err := c.OpenFile("/d/a", rw|os.O_EXCL, 0); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL over a file: %v", err)
	}
	if _, err := c.OpenFile("/d/b", os.O_RDWR, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := c.OpenFile("/nodir/b", rw, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("create in a missing dir: %v", err)
	}
	ents, err := c.ReadDir("/d")
	must(t, err)
	if len(ents) != 2 || ents[0].Name != "a" || ents[1].Name != "sub" || !ents[1].IsDir {
		t.Fatalf("readdir: %+v", ents)
	}
	if err := c.Remove("/d"); err == nil {
		t.Fatal("removed a non-empty directory")
	}
	l, err := c.Lock("/d/LOCK")
	must(t, err)
	if _, err := c.Lock("/d/LOCK"); !errors.Is(err, vfs.ErrLocked) {
		t.Fatalf("second lock: %v", err)
	}
	must(t, l.Close())
	l, err = c.Lock("/d/LOCK")
	must(t, err)
	l.Close()
	ro := mustOpen(t, c, "/d/a", os.O_RDONLY)
	if _, err := ro.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("wrote through a read-only handle")
	}
}
