package bench

import (
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"blockhash/blockstore"
)

// TestDevicePath runs the device path briefly on a small device: every
// figure is filled, and the read patterns checked what they read against
// what was written (a mismatch fails the run with ErrMismatch).
func TestDevicePath(t *testing.T) {
	o := Options{DeviceTime: 100 * time.Millisecond, DeviceBytes: 8 << 20}
	o.defaults()
	res, err := runDevicePath(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	figures := map[string]float64{
		"device_randwrite_iops":     res.DeviceRandWriteIOPS,
		"device_randwrite_dup_iops": res.DeviceRandWriteDupIOPS,
		"device_randread_iops":      res.DeviceRandReadIOPS,
		"file_randwrite_iops":       res.FileRandWriteIOPS,
		"file_randread_iops":        res.FileRandReadIOPS,
		"sha256_mb_s":               res.SHA256MBs,
	}
	if res.FileDirect {
		figures["file_randwrite_direct_iops"] = res.FileRandWriteDirectIOPS
		figures["file_randread_direct_iops"] = res.FileRandReadDirectIOPS
	} else {
		t.Log("no O_DIRECT on the test's file system: direct figures not measured")
	}
	for k, v := range figures {
		if !(v > 0) {
			t.Errorf("%s = %v, want > 0", k, v)
		}
	}
	if res.DeviceReadBlocks == 0 || res.VerifiedReads < int64(3*o.Inflight) {
		t.Errorf("read %d blocks, checked %d reads; want blocks, and one check per reader and pattern at least", res.DeviceReadBlocks, res.VerifiedReads)
	}
	if res.Inflight != 32 || res.FlushEvery != 1000 || res.DeviceBytes != 8<<20 {
		t.Errorf("inflight %d, flush every %d, %d bytes; want the defaults and the size asked", res.Inflight, res.FlushEvery, res.DeviceBytes)
	}
}

// memDisk is an in-memory target; each goroutine of the patterns touches
// its own blocks.
type memDisk []byte

func (m memDisk) ReadAt(p []byte, off int64) (int, error)  { return copy(p, m[off:]), nil }
func (m memDisk) WriteAt(p []byte, off int64) (int, error) { return copy(m[off:], p), nil }

// badReads corrupts what an underlying ReadAt returns.
type badReads struct {
	io.WriterAt
	read func(p []byte, off int64) (int, error)
}

func (b badReads) ReadAt(p []byte, off int64) (int, error) { return b.read(p, off) }

// TestReadPatternChecks: the read pattern fails with ErrMismatch when reads
// return other data than the last write of the block, and passes when they
// return it.
func TestReadPatternChecks(t *testing.T) {
	const blocks = 256
	o := Options{DeviceTime: 10 * time.Millisecond}
	o.defaults()
	disk := make(memDisk, blocks*blockstore.BlockSize)
	s := newStamper(tagFile)
	// Every block written, at generations 2 to 6 (older ones exist).
	last := make([]uint32, blocks)
	old := make(memDisk, len(disk)) // each block as its older generation
	for lba := range uint64(blocks) {
		last[lba] = 2 + uint32(lba%5)
		s.fill(disk[lba*blockstore.BlockSize:], lba, last[lba])
		s.fill(old[lba*blockstore.BlockSize:], lba, last[lba]-1)
	}
	set := written(last)
	cases := []struct {
		name string
		read func(p []byte, off int64) (int, error)
		want error
	}{
		{"right", disk.ReadAt, nil},
		{"next block", func(p []byte, off int64) (int, error) {
			return disk.ReadAt(p, (off+blockstore.BlockSize)%int64(len(disk)))
		}, ErrMismatch},
		{"one bit flipped", func(p []byte, off int64) (int, error) {
			n, err := disk.ReadAt(p, off)
			p[blockstore.BlockSize-1] ^= 1
			return n, err
		}, ErrMismatch},
		{"zeros", func(p []byte, off int64) (int, error) { clear(p); return len(p), nil }, ErrMismatch},
		{"older generation", old.ReadAt, ErrMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := target{badReads{disk, tc.read}, disk, func() error { return nil }, blocks}
			p, err := randRead(tg, o, 20*time.Millisecond, set, s, last)
			if !errors.Is(err, tc.want) {
				t.Fatalf("randRead: %v, want %v", err, tc.want)
			}
			if tc.want == nil && p.verified == 0 {
				t.Fatal("no read checked")
			}
		})
	}
}

// TestWritePatternRecordsLast: after the write pattern, every block holds
// the generation it recorded (zeros where it recorded none), and it flushed
// after every FlushEvery-th write and at the end.
func TestWritePatternRecordsLast(t *testing.T) {
	const blocks = 64
	o := Options{FlushEvery: 10}
	o.defaults()
	disk := make(memDisk, blocks*blockstore.BlockSize)
	s := newStamper(tagDevice)
	last := make([]uint32, blocks)
	var flushes atomic.Int64 // flushes run concurrently, as a store's may
	p, err := randWrite(target{disk, disk, func() error { flushes.Add(1); return nil }, blocks}, o, 20*time.Millisecond, stampContent(s), last)
	if err != nil {
		t.Fatal(err)
	}
	if p.ops < int64(o.Inflight) || p.flushes != p.ops/10+1 || flushes.Load() != p.flushes {
		t.Errorf("%d writes, %d flushes reported, %d made; want %d writes at least and a flush every 10 and at the end", p.ops, p.flushes, flushes.Load(), o.Inflight)
	}
	scratch := make([]byte, blockstore.BlockSize)
	for lba := range uint64(blocks) {
		b := disk[lba*blockstore.BlockSize:][:blockstore.BlockSize]
		if last[lba] == 0 {
			if !isZeros(b) {
				t.Errorf("block %d: written but not recorded", lba)
			}
			continue
		}
		if err := s.check(b, scratch, lba, last[lba]); err != nil {
			t.Error(err)
		}
	}
}

func isZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
