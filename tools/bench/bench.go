// Package bench measures the store: unique and duplicate ingest, random
// reads against the same disk's plain file, and index RAM per unique block.
// It backs `blockhash bench`; the figures are reported, never asserted.
//
// Concurrency: Run uses a fixed number of goroutines per phase (Writers,
// Readers); nothing outlives a phase.
package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"blockhash/blockstore"
	"blockhash/engine"
	"blockhash/index"
)

// Options size the benchmark.
type Options struct {
	Dir         string        // scratch directory (on the disk to measure)
	IngestBytes int64         // bytes written per ingest phase (default 2 GiB)
	ReadTime    time.Duration // duration of each read phase (default 5s)
	Readers     int           // concurrent readers (default 32)
	Writers     int           // concurrent 1 MiB writers (default 4)
	IndexBlocks int           // unique keys for the index RAM figure (default 2,000,000)
	Log         io.Writer     // progress lines (may be nil)
}

// Result is what `blockhash bench --json` prints.
type Result struct {
	UniqueIngestMBs        float64 `json:"unique_ingest_mb_s"`
	DuplicateIngestMBs     float64 `json:"duplicate_ingest_mb_s"`
	RandomReadIOPS         float64 `json:"random_read_iops"`
	RawRandomReadIOPS      float64 `json:"raw_random_read_iops"`
	ReadRatio              float64 `json:"read_ratio"`
	IndexRAMBytesPerBlock  float64 `json:"index_ram_bytes_per_block"`
	IndexHeapBytesPerBlock float64 `json:"index_heap_bytes_per_block"`
	IndexBlocks            int     `json:"index_blocks"`
	IndexDiskBytesPerEntry float64 `json:"index_disk_bytes_per_entry"`
	IngestBytes            int64   `json:"ingest_bytes"`
	Cores                  int     `json:"cores"`
}

func (o *Options) defaults() {
	if o.IngestBytes <= 0 {
		o.IngestBytes = 2 << 30
	}
	o.IngestBytes = o.IngestBytes / (1 << 20) * (1 << 20)
	if o.ReadTime <= 0 {
		o.ReadTime = 5 * time.Second
	}
	if o.Readers <= 0 {
		o.Readers = 32
	}
	if o.Writers <= 0 {
		o.Writers = 4
	}
	if o.IndexBlocks <= 0 {
		o.IndexBlocks = 2_000_000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// Run runs every phase in a fresh store under o.Dir and removes it after.
func Run(o Options) (Result, error) {
	o.defaults()
	res := Result{IngestBytes: o.IngestBytes, Cores: runtime.GOMAXPROCS(0)}
	dir, err := os.MkdirTemp(o.Dir, "blockhash-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	store := filepath.Join(dir, "store")
	if err := engine.Create(store, engine.Options{}); err != nil {
		return res, err
	}
	eng, err := engine.Open(store, engine.Options{CommitInterval: -1})
	if err != nil {
		return res, err
	}
	defer eng.Close()
	a, err := eng.CreateDevice("unique", o.IngestBytes)
	if err != nil {
		return res, err
	}
	b, err := eng.CreateDevice("duplicate", o.IngestBytes)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "unique ingest of %d MiB...\n", o.IngestBytes>>20)
	if res.UniqueIngestMBs, err = ingest(a, o); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "  %.0f MB/s\nduplicate ingest...\n", res.UniqueIngestMBs)
	if res.DuplicateIngestMBs, err = ingest(b, o); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "  %.0f MB/s\nrandom 4 KiB reads, %d readers...\n", res.DuplicateIngestMBs, o.Readers)
	if res.RandomReadIOPS, err = randomReads(o, a.Size(), func(buf []byte, off int64) error {
		_, err := a.ReadAt(buf, off)
		return err
	}); err != nil {
		return res, err
	}
	raw, err := writeRawFile(filepath.Join(dir, "raw"), o)
	if err != nil {
		return res, err
	}
	defer raw.Close()
	fmt.Fprintf(o.Log, "  %.0f IOPS\nraw file random reads (O_DIRECT)...\n", res.RandomReadIOPS)
	if res.RawRandomReadIOPS, err = randomReads(o, o.IngestBytes, func(buf []byte, off int64) error {
		_, err := raw.ReadAt(buf, off)
		return err
	}); err != nil {
		return res, err
	}
	if res.RawRandomReadIOPS > 0 {
		res.ReadRatio = res.RandomReadIOPS / res.RawRandomReadIOPS
	}
	fmt.Fprintf(o.Log, "  %.0f IOPS\nindex RAM with %d unique blocks...\n", res.RawRandomReadIOPS, o.IndexBlocks)
	if err := indexRAM(filepath.Join(dir, "index"), o, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "  %.2f bytes per block\n", res.IndexRAMBytesPerBlock)
	return res, nil
}

// fill makes the content of chunk n: unique 4 KiB blocks (a counter stamped
// into random bytes), the same for every device so the second ingest is all
// duplicates.
func fill(buf []byte, base []byte, chunk int64) {
	copy(buf, base)
	for i := 0; i < len(buf); i += blockstore.BlockSize {
		binary.LittleEndian.PutUint64(buf[i:], uint64(chunk)<<20|uint64(i/blockstore.BlockSize)+1)
	}
}

func randomBase() []byte {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// ingest writes IngestBytes in 1 MiB requests with Writers goroutines and
// flushes; it returns MB/s (10^6 bytes) including the flush.
func ingest(d *engine.Device, o Options) (float64, error) {
	base := randomBase()
	chunks := o.IngestBytes >> 20
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range o.Writers {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for {
				c := next.Add(1) - 1
				if c >= chunks || firstErr.Load() != nil {
					return
				}
				fill(buf, base, c)
				if _, err := d.WriteAt(buf, c<<20); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, *p
	}
	if err := d.Flush(); err != nil {
		return 0, err
	}
	return float64(o.IngestBytes) / time.Since(start).Seconds() / 1e6, nil
}

func writeRawFile(path string, o Options) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	base := randomBase()
	buf := make([]byte, 1<<20)
	for c := int64(0); c < o.IngestBytes>>20; c++ {
		fill(buf, base, c)
		if _, err := f.WriteAt(buf, c<<20); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	d, direct, err := blockstore.OpenDirect(path)
	if err != nil {
		return nil, err
	}
	if !direct {
		d.Close()
		return nil, errors.New("bench: the scratch file system does not support O_DIRECT; use --dir on a disk")
	}
	return d, nil
}

// randomReads runs Readers goroutines reading random aligned 4 KiB blocks of
// [0, size) for ReadTime and returns reads per second.
func randomReads(o Options, size int64, read func([]byte, int64) error) (float64, error) {
	blocks := size / blockstore.BlockSize
	var total atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(o.ReadTime)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.Readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 5))
			buf := blockstore.AlignedBuf(blockstore.BlockSize)
			n := 0
			for time.Now().Before(deadline) {
				if err := read(buf, r.Int64N(blocks)*blockstore.BlockSize); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				n++
			}
			total.Add(int64(n))
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, *p
	}
	return float64(total.Load()) / time.Since(start).Seconds(), nil
}

// indexRAM fills an index with IndexBlocks unique keys through its public
// API and reports level one's bytes per entry, the Go heap growth per entry
// between a third and all of the keys (fixed costs such as LevelDB's
// buffers are reached before the first point), and LevelDB's disk bytes
// per entry.
func indexRAM(dir string, o Options, res *Result) error {
	ix, err := index.Open(dir, index.Options{})
	if err != nil {
		return err
	}
	defer ix.Close()
	var ops []index.Op
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var h0 uint64
	third := o.IndexBlocks / 3
	var b [8]byte
	for i := range o.IndexBlocks {
		binary.LittleEndian.PutUint64(b[:], uint64(i)*0x9E3779B97F4A7C15+1)
		var k index.Key
		for j := 0; j < index.SumSize; j += 8 {
			binary.LittleEndian.PutUint64(k.Sum[j:], binary.LittleEndian.Uint64(b[:])*uint64(j+3))
		}
		k.CRC = uint32(i)
		ix.Insert(k, uint64(i))
		ops = append(ops, index.Op{Key: k, Slot: uint64(i)})
		if len(ops) == 65536 || i == o.IndexBlocks-1 {
			ix.Seal()
			if err := ix.Apply(ops); err != nil {
				return err
			}
			ops = ops[:0]
		}
		if i == third {
			h0 = heap()
		}
	}
	h1 := heap()
	st := ix.Stats()
	res.IndexBlocks = st.Entries
	res.IndexRAMBytesPerBlock = float64(st.FilterBytes) / float64(st.Entries)
	res.IndexHeapBytesPerBlock = (float64(h1) - float64(h0)) / float64(o.IndexBlocks-third)
	ix.Close()
	var disk int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			disk += fi.Size()
		}
		return nil
	})
	res.IndexDiskBytesPerEntry = float64(disk) / float64(st.Entries)
	return nil
}
