package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"blockhash/blockstore"
	"blockhash/vfs"
)

// Upgrade converts a store of format 1 (one flat map file per device,
// "devices/NAME.map") to the current format in place: each device's map
// pages are copied into the page file under a tree of its own, and a
// volume file is written for it. Block data, slot records and the index
// are the same in both formats. The new superblock is the commit point: a
// crash before it leaves the old store whole (the next Upgrade starts
// again); after it, the old map files are only leftovers, removed here or
// by the next Open. A store with a commit still in its journal is refused:
// the blockhash that made it must replay it first.
func Upgrade(dir string, o Options) error {
	fsys := o.fs()
	sbPath := filepath.Join(dir, superblockName)
	b, err := vfs.ReadFile(fsys, sbPath)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNoStore, dir)
	}
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	sb, err := DecodeSuperblock(b)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s is already of format %d", ErrExists, dir, FormatVersion)
	case !errors.Is(err, ErrFormat) || sb.Version != 1:
		return fmt.Errorf("%s: %w", sbPath, err)
	}
	lock, err := blockstore.LockDirFS(fsys, dir)
	if err != nil {
		if errors.Is(err, blockstore.ErrLocked) {
			return fmt.Errorf("store %s is in use by another blockhash process: %w", dir, err)
		}
		return err
	}
	defer lock.Close()
	if st, err := fsys.Stat(filepath.Join(dir, journalName)); err == nil && st.Size > 0 {
		return fmt.Errorf("%w: %s has a commit to replay: run any command that writes with the blockhash that made it, then upgrade", ErrFormat, dir)
	}
	devDir := filepath.Join(dir, "devices")
	// Leftovers of an upgrade that did not reach its commit point.
	ents, err := fsys.ReadDir(devDir)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	for _, de := range ents {
		if strings.HasSuffix(de.Name, ".vol") || strings.HasSuffix(de.Name, ".tmp") {
			if err := fsys.Remove(filepath.Join(devDir, de.Name)); err != nil {
				return fmt.Errorf("engine: %w", err)
			}
		}
	}
	if err := fsys.Remove(filepath.Join(dir, pagesName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("engine: %w", err)
	}
	ps, err := openPages(fsys, filepath.Join(dir, pagesName), false)
	if err != nil {
		return err
	}
	defer ps.close()
	u := upgrader{fsys: fsys, ps: ps, next: 1}
	var old []string
	for _, de := range ents {
		if !strings.HasSuffix(de.Name, ".map") || de.IsDir {
			continue
		}
		path := filepath.Join(devDir, de.Name)
		if err := u.device(path, devDir); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		old = append(old, path)
	}
	if err := ps.f.Sync(); err != nil {
		return fmt.Errorf("engine: sync map pages: %w", err)
	}
	for _, d := range []string{devDir, dir} {
		if err := fsys.SyncDir(d); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	sb.Version = FormatVersion
	if err := vfs.WriteFileDurable(fsys, sbPath, sb.Encode()); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	for _, p := range old {
		fsys.Remove(p)
	}
	return fsys.SyncDir(devDir)
}

// upgrader copies format-1 maps into the page file.
type upgrader struct {
	fsys vfs.FS
	ps   *pageSpace
	next uint32 // the next free page
}

// v1Header is a format-1 map header:
//
//	0 8 magic "BHMAP\0\0\1" | 8 4 version | 12 4 device id | 16 8 size in
//	bytes | 24 8 created (Unix ns) | 32 2 name length | 34 .. name |
//	4092 4 CRC-32C of bytes 0..4091
func decodeV1Header(b []byte) (mapHeader, error) {
	var h mapHeader
	if len(b) < mapHeaderSize || [8]byte(b[:8]) != [8]byte{'B', 'H', 'M', 'A', 'P', 0, 0, 1} ||
		crc32.Checksum(b[:4092], castagnoli) != binary.LittleEndian.Uint32(b[4092:]) {
		return h, fmt.Errorf("%w: not a sound format-1 map header (repair the store with the blockhash that made it first)", ErrCorrupt)
	}
	h.ID = binary.LittleEndian.Uint32(b[12:])
	h.Size = int64(binary.LittleEndian.Uint64(b[16:]))
	h.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(b[24:])))
	n := int(binary.LittleEndian.Uint16(b[32:]))
	if n == 0 || n > maxNameLen || h.Size <= 0 || h.Size%BlockSize != 0 || h.ID == 0 || h.Size > maxDeviceSize {
		return h, fmt.Errorf("%w: format-1 map header fields out of range", ErrCorrupt)
	}
	h.Name = string(b[34 : 34+n])
	return h, ValidName(h.Name)
}

// device copies one format-1 map: every page holding an entry becomes a
// leaf; pages past the end of a map cut short are lost.
func (u *upgrader) device(path, devDir string) error {
	f, err := u.fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	hb := make([]byte, mapHeaderSize)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, mapHeaderSize), hb); err != nil {
		return fmt.Errorf("%w: format-1 map header truncated", ErrCorrupt)
	}
	h, err := decodeV1Header(hb)
	if err != nil {
		return err
	}
	h.Kind = kindDevice
	blocks := uint64(h.Size / BlockSize)
	pages := (blocks + mapPerPage - 1) / mapPerPage
	root := make([]uint32, rootsFor(blocks))
	tables := map[uint32]*ptrPage{}
	buf := make([]byte, mapPageSize)
	for p := range pages {
		n, err := f.ReadAt(buf, mapHeaderSize+int64(p)*mapPageSize)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		t, l := uint32(p/ptrsPerPage), p%ptrsPerPage
		var ptr uint32
		switch {
		case n == 0:
			ptr = lostPage // cut short
		case n < mapPageSize:
			fillLost(buf, n)
			fallthrough
		default:
			if isZero(buf) {
				continue
			}
			ptr = u.next
			u.next++
			if _, err := u.ps.f.WriteAt(buf, int64(ptr)*mapPageSize); err != nil {
				return err
			}
		}
		tbl := tables[t]
		if tbl == nil {
			tbl = new(ptrPage)
			tables[t] = tbl
			root[t] = u.next
			u.next++
		}
		tbl[l] = ptr
	}
	for t, tbl := range tables {
		tbl.encode(buf)
		if _, err := u.ps.f.WriteAt(buf, int64(root[t])*mapPageSize); err != nil {
			return err
		}
	}
	return writeVolume(u.fsys, volPath(filepath.Dir(devDir), h.ID), encodeVolume(h, root))
}
