package bench

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"blockhash/blockstore"
	"blockhash/engine"
	"blockhash/vfs"
)

// DeviceResult holds the device path's figures: what a guest does to a
// disk, run natively through the engine's device API, beside the same
// patterns on a plain file of the same disk, and the SHA-256 limit.
type DeviceResult struct {
	DeviceRandWriteIOPS    float64 `json:"device_randwrite_iops"`     // unique data
	DeviceRandWriteDupIOPS float64 `json:"device_randwrite_dup_iops"` // blocks of a small stored pool
	DeviceRandReadIOPS     float64 `json:"device_randread_iops"`
	// The plain file (laid out in full first) through the page cache
	// (buffered pwrite and pread).
	FileRandWriteIOPS float64 `json:"file_randwrite_iops"`
	FileRandReadIOPS  float64 `json:"file_randread_iops"`
	// The plain file with O_DIRECT, when --dir's file system has it
	// (FileDirect); 0 otherwise.
	FileDirect              bool    `json:"file_direct"`
	FileRandWriteDirectIOPS float64 `json:"file_randwrite_direct_iops"`
	FileRandReadDirectIOPS  float64 `json:"file_randread_direct_iops"`
	// SHA-256 of 4 KiB blocks on all cores, MB/s.
	SHA256MBs float64 `json:"sha256_mb_s"`

	DeviceBytes      int64   `json:"device_bytes"`       // logical size of the device and of the file
	DeviceSeconds    float64 `json:"device_seconds"`     // time per pattern
	Inflight         int     `json:"inflight"`           // goroutines per pattern
	FlushEvery       int     `json:"flush_every"`        // writes per flush (fdatasync for the file)
	DeviceReadBlocks int     `json:"device_read_blocks"` // blocks the device's read pattern reads among
	VerifiedReads    int64   `json:"verified_reads"`     // reads checked against what was written, all patterns
}

// Tags of the stampers, so that no two patterns' blocks are alike.
const (
	tagDevice = iota + 1
	tagPool
	tagFile
	tagFileDirect
)

// dupPool is the number of distinct blocks the duplicate pattern writes.
const dupPool = 64

// runDevicePath measures the device path in dir: a fresh store opened with
// the engine's default options, as `serve` opens it (background commits
// included), then a plain file beside it. It removes what it made.
func runDevicePath(dir string, o Options) (DeviceResult, error) {
	res := DeviceResult{DeviceBytes: o.DeviceBytes, DeviceSeconds: o.DeviceTime.Seconds(), Inflight: o.Inflight, FlushEvery: o.FlushEvery}
	fmt.Fprintf(o.Log, "SHA-256 of 4 KiB blocks on all cores...\n")
	res.SHA256MBs = sha256Rate(o.shaTime())
	fmt.Fprintf(o.Log, "  %.0f MB/s\n", res.SHA256MBs)
	if err := devicePatterns(filepath.Join(dir, "device-store"), o, &res); err != nil {
		return res, err
	}
	err := filePatterns(filepath.Join(dir, "plain"), o, &res)
	return res, err
}

func devicePatterns(store string, o Options, res *DeviceResult) error {
	defer os.RemoveAll(store)
	if err := engine.Create(store, engine.Options{}); err != nil {
		return err
	}
	eng, err := engine.Open(store, engine.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	uniq, err := eng.CreateDevice("randwrite", o.DeviceBytes)
	if err != nil {
		return err
	}
	dup, err := eng.CreateDevice("randwrite-dup", o.DeviceBytes)
	if err != nil {
		return err
	}
	pool, err := eng.CreateDevice("pool", dupPool*blockstore.BlockSize)
	if err != nil {
		return err
	}
	if err := DevicePatterns(uniq, dup, pool, o, res); err != nil {
		return err
	}
	return eng.Close()
}

// Device is what the device patterns drive: an engine.Device, or a
// device of a RADOS pool (pool.Device).
type Device interface {
	io.ReaderAt
	io.WriterAt
	Flush() error
}

// DevicePatterns runs the device path's patterns: random 4 KiB writes of
// unique data to uniq, of dupPool stored blocks (written to pool first)
// to dup, and random reads of what uniq holds, each checked. uniq and dup
// hold o.DeviceBytes, pool dupPool blocks.
func DevicePatterns(uniq, dup, pool Device, o Options, res *DeviceResult) error {
	o.defaults()
	stored, err := storePool(pool)
	if err != nil {
		return err
	}
	blocks := uint64(o.DeviceBytes / blockstore.BlockSize)
	s := newStamper(tagDevice)
	last := make([]uint32, blocks)
	fmt.Fprintf(o.Log, "device: random 4 KiB writes of unique data, %d in flight, a flush every %d...\n", o.Inflight, o.FlushEvery)
	p, err := randWrite(target{uniq, uniq, uniq.Flush, blocks}, o, o.DeviceTime, stampContent(s), last)
	if err != nil {
		return err
	}
	res.DeviceRandWriteIOPS = p.iops()
	fmt.Fprintf(o.Log, "  %.0f IOPS (%d writes, %d flushes)\ndevice: random 4 KiB writes of %d stored blocks...\n", p.iops(), p.ops, p.flushes, dupPool)
	p, err = randWrite(target{dup, dup, dup.Flush, blocks}, o, o.DeviceTime, func(r *rand.Rand, b []byte, _ uint64, _ uint32) {
		copy(b, stored[r.IntN(len(stored))])
	}, nil)
	if err != nil {
		return err
	}
	res.DeviceRandWriteDupIOPS = p.iops()
	set := written(last)
	res.DeviceReadBlocks = len(set)
	fmt.Fprintf(o.Log, "  %.0f IOPS (%d writes, %d flushes)\ndevice: random 4 KiB reads of the %d blocks written...\n", p.iops(), p.ops, p.flushes, len(set))
	p, err = randRead(target{uniq, uniq, uniq.Flush, blocks}, o, o.DeviceTime, set, s, last)
	if err != nil {
		return err
	}
	res.DeviceRandReadIOPS = p.iops()
	res.VerifiedReads += p.verified
	fmt.Fprintf(o.Log, "  %.0f IOPS (%d reads checked)\n", p.iops(), p.verified)
	return nil
}

// storePool writes dupPool distinct blocks to d and flushes: the
// duplicate pattern's writes find them all stored.
func storePool(d Device) ([][]byte, error) {
	s := newStamper(tagPool)
	pool := make([][]byte, dupPool)
	for i := range pool {
		pool[i] = make([]byte, blockstore.BlockSize)
		s.fill(pool[i], uint64(i), 1)
		if _, err := d.WriteAt(pool[i], int64(i)*blockstore.BlockSize); err != nil {
			return nil, err
		}
	}
	return pool, d.Flush()
}

func stampContent(s stamper) content {
	return func(_ *rand.Rand, b []byte, lba uint64, gen uint32) { s.fill(b, lba, gen) }
}

// filePatterns runs the write and read patterns on a plain file at path
// of DeviceBytes, laid out in full first as fio does (so that the
// patterns' writes overwrite data and change no file system metadata: on a
// preallocated or sparse file, 4 KiB random writes split its extents, and
// removing it took 10 s and more here): pwrite and pread at random 4 KiB
// offsets, fdatasync every FlushEvery writes. It runs them with O_DIRECT
// first, where the file system has it (vfs.Direct: the flag lives in vfs
// with the project's other file system calls), then through the page
// cache, whose reads are then of pages the writes left cached.
func filePatterns(path string, o Options, res *DeviceResult) error {
	defer os.Remove(path)
	d, err := vfs.OS.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|vfs.Direct, 0o600)
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprintf(o.Log, "plain file: laying out %d MiB...\n", o.DeviceBytes>>20)
	if err := layOut(d, o.DeviceBytes); err != nil {
		return err
	}
	res.FileDirect = d.Direct()
	if res.FileDirect {
		if res.FileRandWriteDirectIOPS, res.FileRandReadDirectIOPS, err = filePass(d, "O_DIRECT", tagFileDirect, o, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(o.Log, "plain file: no O_DIRECT on this file system, skipped\n")
	}
	f, err := vfs.OS.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if res.FileRandWriteIOPS, res.FileRandReadIOPS, err = filePass(f, "buffered", tagFile, o, res); err != nil {
		return err
	}
	return errors.Join(f.Close(), d.Close())
}

// layOut writes f's first size bytes (zeros, 1 MiB at a time) and syncs.
func layOut(f vfs.File, size int64) error {
	buf := blockstore.AlignedBuf(1 << 20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// filePass runs the write pattern on f, then the read pattern on the
// blocks it wrote, and returns their rates.
func filePass(f vfs.File, kind string, tag uint32, o Options, res *DeviceResult) (write, read float64, err error) {
	blocks := uint64(o.DeviceBytes / blockstore.BlockSize)
	t := target{f, f, f.Sync, blocks}
	s := newStamper(tag)
	last := make([]uint32, blocks)
	fmt.Fprintf(o.Log, "plain file (%s): random 4 KiB writes, %d in flight, fdatasync every %d...\n", kind, o.Inflight, o.FlushEvery)
	p, err := randWrite(t, o, o.DeviceTime, stampContent(s), last)
	if err != nil {
		return 0, 0, err
	}
	write = p.iops()
	set := written(last)
	fmt.Fprintf(o.Log, "  %.0f IOPS (%d writes, %d fdatasyncs)\nplain file (%s): random 4 KiB reads of the %d blocks written...\n", write, p.ops, p.flushes, kind, len(set))
	if p, err = randRead(t, o, o.DeviceTime, set, s, last); err != nil {
		return 0, 0, err
	}
	res.VerifiedReads += p.verified
	fmt.Fprintf(o.Log, "  %.0f IOPS (%d reads checked)\n", p.iops(), p.verified)
	return write, p.iops(), nil
}

// LocalDevicePath runs the device patterns alone on a fresh local store
// in a scratch directory under dir (beside another store's, such as a
// RADOS pool's: blockhash bench --rados).
func LocalDevicePath(dir string, o Options) (DeviceResult, error) {
	o.defaults()
	res := DeviceResult{DeviceBytes: o.DeviceBytes, DeviceSeconds: o.DeviceTime.Seconds(), Inflight: o.Inflight, FlushEvery: o.FlushEvery}
	scratch, err := os.MkdirTemp(dir, "blockhash-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(scratch)
	err = devicePatterns(filepath.Join(scratch, "store"), o, &res)
	return res, err
}
