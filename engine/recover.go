package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"blockhash/blockstore"
	"blockhash/index"
	"blockhash/vfs"
)

// strayStoreFile names a file of a store in dir that holds data (an
// extent, a volume or map, the journal), or "" if there is none. (The
// index and the page file alone hold nothing: Create makes them before the
// superblock.) Create refuses such a
// directory when its superblock is missing: a new superblock with other
// settings (another hash) would make every stored block look damaged.
func strayStoreFile(dir string) string {
	for _, pat := range []string{"blocks/extent-*", "devices/*.vol", "devices/*.map", journalName} {
		if m, _ := filepath.Glob(filepath.Join(dir, pat)); len(m) > 0 {
			rel, _ := filepath.Rel(dir, m[0])
			return rel
		}
	}
	return ""
}

// recoverProbeSlots bounds the live slots RecoverSuperblock reads to tell
// the hash (it stops at the first that matches).
const recoverProbeSlots = 1024

// RecoverSuperblock writes a new superblock for a store in dir that lost
// its own, derived from the store's files: the extent size from the extent
// files' size, the hash from stored blocks (a live slot's data hashed with
// SHA-256 and with SHA-1, compared with the key its slot record holds).
// What the files cannot tell comes from o: Verify (SHA-1 implies it), and
// the hash and extent size of a store that holds no block yet.
//
// A damaged superblock (one that fails its checksum) is replaced, and kept
// as "superblock.damaged"; a sound one, or one of another format version,
// is left alone.
func RecoverSuperblock(dir string, o Options) (Superblock, error) {
	path := filepath.Join(dir, superblockName)
	_, err := readSuperblock(vfs.OS, dir)
	switch {
	case err == nil:
		return Superblock{}, fmt.Errorf("%w: %s has a sound superblock", ErrExists, dir)
	case errors.Is(err, ErrCorrupt):
	case !errors.Is(err, ErrNoStore):
		return Superblock{}, err
	}
	if strayStoreFile(dir) == "" {
		return Superblock{}, fmt.Errorf("%w: %s", ErrNoStore, dir)
	}
	lock, err := blockstore.LockDir(dir)
	if err != nil {
		return Superblock{}, err
	}
	defer lock.Close()
	sb := Superblock{Version: FormatVersion, BlockSize: BlockSize, Hash: o.Hash, Verify: o.Verify,
		ExtentSize: o.ExtentSize, Created: time.Now()}
	if sb.Hash == 0 {
		sb.Hash = SHA256
	}
	if sb.ExtentSize == 0 {
		sb.ExtentSize = blockstore.DefaultExtentSize
	}
	blocks := filepath.Join(dir, "blocks")
	st, err := os.Stat(filepath.Join(blocks, "extent-000000.dat"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return sb, fmt.Errorf("engine: %w", err)
	default:
		sb.ExtentSize = st.Size()
		if sb.ExtentSize < 16*BlockSize || sb.ExtentSize%BlockSize != 0 {
			return sb, fmt.Errorf("%w: extent-000000.dat is %d bytes, not an extent size", ErrCorrupt, sb.ExtentSize)
		}
		h, found, err := storedHash(blocks, sb.ExtentSize)
		if err != nil {
			return sb, err
		}
		if found {
			sb.Hash = h
		}
	}
	sha1Verifies(&sb)
	if _, err := os.Stat(path); err == nil {
		if err := os.Rename(path, path+".damaged"); err != nil {
			return sb, fmt.Errorf("engine: %w", err)
		}
	}
	if err := blockstore.WriteFileDurable(path, sb.Encode()); err != nil {
		return sb, err
	}
	return sb, nil
}

// storedHash finds the hash a store's blocks were keyed with: the first
// live slot whose data hashes to its record's key under SHA-256 or SHA-1
// tells. found is false when the store holds no live slot.
func storedHash(blocks string, extentSize int64) (h HashAlg, found bool, err error) {
	bs, err := blockstore.OpenExtents(blocks, extentSize)
	if err != nil {
		return 0, false, err
	}
	defer bs.Close()
	const chunk = 4096
	recs := make([]blockstore.Meta, chunk)
	data := make([]byte, BlockSize)
	probed := 0
	for first := uint64(0); first < bs.Slots(); first += chunk {
		n := min(chunk, bs.Slots()-first)
		err := bs.ReadMeta(blockstore.Slot(first), recs[:n])
		var ce *blockstore.CorruptError
		if err != nil && !errors.As(err, &ce) {
			return 0, false, err // damaged records come back zeroed: skipped
		}
		for i := range n {
			if recs[i].Refs == 0 {
				continue
			}
			if err := bs.ReadAt(data, blockstore.Slot(first+i)); err != nil {
				return 0, false, err
			}
			k, _ := index.DecodeKey(recs[i].Tag[:])
			for _, alg := range []HashAlg{SHA256, SHA1} {
				if alg.blockKey(data) == k {
					return alg, true, nil
				}
			}
			if probed++; probed >= recoverProbeSlots {
				break
			}
		}
		if probed >= recoverProbeSlots {
			break
		}
	}
	if probed > 0 {
		return 0, false, fmt.Errorf("%w: none of %d stored blocks matches its key under sha256 or sha1", ErrCorrupt, probed)
	}
	return 0, false, nil
}
