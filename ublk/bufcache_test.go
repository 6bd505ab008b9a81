package ublk

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FlushBufferCache refuses what is not a block device, with an error that
// names the path. (The ioctl itself is tested on the real driver: VM
// scenario migrate.)
func TestFlushBufferCacheRefuses(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(t.TempDir(), "nope"), fs.ErrNotExist},
		{"regular file", file, unix.ENOTBLK},
		{"directory", t.TempDir(), unix.ENOTBLK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := FlushBufferCache(tc.path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("error does not name the path: %v", err)
			}
		})
	}
}

// On a loop device (root and losetup needed; skipped otherwise): while
// someone holds the device open its pages stay cached, so a change made
// underneath it (to the backing file) is not seen, until FlushBufferCache.
func TestFlushBufferCacheDropsStalePages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (losetup)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup")
	}
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, bytes.Repeat([]byte("A"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skip("losetup cannot attach a loop device here:", err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	holder, err := os.Open(dev) // keeps the cache: the last close would drop it
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	read := func() string {
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 4)
		if _, err := f.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := read(); got != "AAAA" {
		t.Fatalf("read %q", got)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("BBBB"), 0)
	f.Close()
	if got := read(); got != "AAAA" {
		t.Skipf("the loop device did not keep its cached page (read %q): nothing to drop", got)
	}
	if err := FlushBufferCache(dev); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "BBBB" {
		t.Fatalf("after FlushBufferCache read %q, want the new BBBB", got)
	}
}
