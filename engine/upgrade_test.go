package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"blockhash/vfs"
)

// downgrade rewrites a closed store in format 1: one flat map file per
// device (header, then 85 entries per 4 KiB page at fixed places), no page
// file, no volume files, a version-1 superblock. cut shortens a's map to
// that many bytes (0: whole).
func downgrade(t *testing.T, dir string, cut int64) {
	t.Helper()
	e := openOK(t, dir)
	type dev struct {
		h    mapHeader
		ents map[uint64]mapEntry
	}
	var devs []dev
	for _, name := range e.Devices() {
		d, _ := e.Device(name)
		ents := map[uint64]mapEntry{}
		if err := d.m.each(func(lba uint64, ent mapEntry) error { ents[lba] = ent; return nil }); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, dev{d.m.hdr, ents})
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, pagesName))
	vols, _ := filepath.Glob(filepath.Join(dir, "devices", "*.vol"))
	for _, v := range vols {
		os.Remove(v)
	}
	for _, d := range devs {
		blocks := uint64(d.h.Size / BlockSize)
		b := make([]byte, mapHeaderSize+int64((blocks+mapPerPage-1)/mapPerPage)*mapPageSize)
		copy(b, []byte{'B', 'H', 'M', 'A', 'P', 0, 0, 1})
		binary.LittleEndian.PutUint32(b[8:], 1)
		binary.LittleEndian.PutUint32(b[12:], d.h.ID)
		binary.LittleEndian.PutUint64(b[16:], uint64(d.h.Size))
		binary.LittleEndian.PutUint64(b[24:], uint64(d.h.Created.UnixNano()))
		binary.LittleEndian.PutUint16(b[32:], uint16(len(d.h.Name)))
		copy(b[34:], d.h.Name)
		binary.LittleEndian.PutUint32(b[4092:], crc32.Checksum(b[:4092], castagnoli))
		for lba, ent := range d.ents {
			ent.encode(b[mapHeaderSize+int64(lba/mapPerPage)*mapPageSize+int64(lba%mapPerPage)*mapEntrySize:])
		}
		if d.h.Name == "a" && cut > 0 {
			b = b[:cut]
		}
		if err := os.WriteFile(filepath.Join(dir, "devices", d.h.Name+".map"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sb, err := readSuperblock(vfs.OS, dir)
	if err != nil {
		t.Fatal(err)
	}
	sb.Version = 1
	if err := os.WriteFile(filepath.Join(dir, superblockName), sb.Encode(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A format-1 store is refused with a one-line error naming the upgrade;
// Upgrade converts it in place (every block reads as before, fsck is
// clean); a second Upgrade says there is nothing to do.
func TestUpgradeFormat1(t *testing.T) {
	dir, want := threeDevices(t)
	downgrade(t, dir, 0)
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrFormat) || !bytes.Contains([]byte(err.Error()), []byte("blockhash upgrade")) {
		t.Fatalf("open of a format-1 store: %v", err)
	}
	if err := Upgrade(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "devices", "*.map")); len(m) != 0 {
		t.Fatalf("format-1 maps left: %v", m)
	}
	e := openOK(t, dir)
	checkDevices(t, e, want)
	fsckOK(t, e)
	e.Close()
	if err := Upgrade(dir, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second upgrade: %v", err)
	}
}

// A format-1 map cut short keeps its blocks before the cut; the rest is
// lost, as format 1 read it.
func TestUpgradeMapCutShort(t *testing.T) {
	dir, want := threeDevices(t)
	downgrade(t, dir, mapHeaderSize+100)
	if err := Upgrade(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	e := openOK(t, dir)
	d, _ := e.Device("a")
	if got := mustRead(t, d, 0, BlockSize); !bytes.Equal(got, want["a"][:BlockSize]) {
		t.Fatal("a block before the cut reads wrong")
	}
	if _, err := d.ReadAt(make([]byte, BlockSize), 3*BlockSize); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a block past the cut: %v, want ErrCorrupt", err)
	}
}

// loadInto copies the directory tree src (on disk) into the crash file
// system at dst, durably.
func loadInto(t *testing.T, c *vfs.CrashFS, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if de.IsDir() {
			return c.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return vfs.WriteFileDurable(c, target, b)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dst, filepath.Join(dst, "devices"), filepath.Join(dst, "blocks"), filepath.Join(dst, "index")} {
		c.SyncDir(d)
	}
}

// A power cut at any step of an upgrade leaves a store that a second
// upgrade (or, past the commit point, an open) turns into the upgraded
// store, every block whole.
func TestUpgradePowerCut(t *testing.T) {
	dir, want := threeDevices(t)
	downgrade(t, dir, 0)
	pristine := vfs.NewCrashFS(1)
	loadInto(t, pristine, dir, "/s")
	for n := int64(0); ; n++ {
		c := pristine.CrashClone()
		c.CrashAfter(n)
		err := Upgrade("/s", Options{FS: c})
		img := c.Crashed()
		if img == nil {
			if err != nil {
				t.Fatalf("upgrade without a crash: %v", err)
			}
			t.Logf("%d power cuts, one at every step of the upgrade", n)
			return
		}
		if err := Upgrade("/s", Options{FS: img}); err != nil && !errors.Is(err, ErrExists) {
			t.Fatalf("cut after %d steps: the second upgrade: %v", n, err)
		}
		e, err := Open("/s", Options{FS: img, CommitInterval: -1})
		if err != nil {
			t.Fatalf("cut after %d steps: open: %v", n, err)
		}
		checkDevices(t, e, want)
		fsckOK(t, e)
		e.Close()
	}
}

func FuzzDecodeV1Header(f *testing.F) {
	good := make([]byte, 40)
	copy(good, []byte{'B', 'H', 'M', 'A', 'P', 0, 0, 1})
	binary.LittleEndian.PutUint32(good[8:], 1)
	binary.LittleEndian.PutUint32(good[12:], 3)
	binary.LittleEndian.PutUint64(good[16:], 1<<20)
	binary.LittleEndian.PutUint16(good[32:], 2)
	copy(good[34:], "vm")
	f.Add(good, true)
	f.Add(good, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = withCRC(b, mapHeaderSize)
		}
		h, err := decodeV1Header(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is neither ErrCorrupt nor ErrInvalid", err)
			}
			return
		}
		if h.ID == 0 || h.Size <= 0 || h.Size%BlockSize != 0 || ValidName(h.Name) != nil {
			t.Fatalf("accepted a header out of range: %+v", h)
		}
	})
}
