// Package bench measures the store: unique and duplicate ingest, random
// reads against the same disk's plain file, index RAM per unique block, and
// the device path (random 4 KiB writes and reads through the engine's device
// API beside the same patterns on a plain file, and the SHA-256 limit). It
// backs `blockhash bench`; the figures are reported, never asserted.
//
// Concurrency: Run uses a fixed number of goroutines per phase (Writers,
// Readers, Inflight; one per core for SHA-256); nothing outlives a phase.
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
	"blockhash/vfs"
)

// Options size the benchmark.
type Options struct {
	Dir         string        // scratch directory (on the disk to measure)
	IngestBytes int64         // bytes written per ingest phase (default 2 GiB)
	ReadTime    time.Duration // reading time per side, store and plain file (default 5s)
	Readers     int           // concurrent readers (default 32)
	Writers     int           // concurrent 1 MiB writers (default 4)
	IndexBlocks int           // unique keys for the index RAM figure (default 2,000,000)
	DeviceTime  time.Duration // time per device-path pattern (default 3s)
	DeviceBytes int64         // logical size of the device-path device and file (default 1 GiB)
	Inflight    int           // requests in flight in the device path (default 32)
	FlushEvery  int           // device-path writes per flush (default 1,000)
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
	Procs                  int     `json:"procs"` // GOMAXPROCS
	DeviceResult
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
	if o.DeviceTime <= 0 {
		o.DeviceTime = 3 * time.Second
	}
	if o.Inflight <= 0 {
		o.Inflight = 32
	}
	if o.DeviceBytes <= 0 {
		o.DeviceBytes = 1 << 30
	}
	o.DeviceBytes = max(o.DeviceBytes/blockstore.BlockSize, int64(o.Inflight)) * blockstore.BlockSize
	if o.FlushEvery <= 0 {
		o.FlushEvery = 1000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
}

// shaTime is how long the SHA-256 figure hashes: a third of a pattern's
// time.
func (o *Options) shaTime() time.Duration { return o.DeviceTime / 3 }

// Run runs every phase in a fresh store under o.Dir and removes it after.
func Run(o Options) (Result, error) {
	o.defaults()
	res := Result{IngestBytes: o.IngestBytes, Cores: runtime.NumCPU(), Procs: runtime.GOMAXPROCS(0)}
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
	raw, err := writeRawFile(filepath.Join(dir, "raw"), o)
	if err != nil {
		return res, err
	}
	defer raw.Close()
	fmt.Fprintf(o.Log, "  %.0f MB/s\nrandom 4 KiB reads, %d readers, store and plain file in turns...\n", res.DuplicateIngestMBs, o.Readers)
	if res.RandomReadIOPS, res.RawRandomReadIOPS, err = readRounds(o, func(buf []byte, off int64) error {
		_, err := a.ReadAt(buf, off)
		return err
	}, func(buf []byte, off int64) error {
		_, err := raw.ReadAt(buf, off)
		return err
	}); err != nil {
		return res, err
	}
	if res.RawRandomReadIOPS > 0 {
		res.ReadRatio = res.RandomReadIOPS / res.RawRandomReadIOPS
	}
	fmt.Fprintf(o.Log, "  store %.0f IOPS, plain file %.0f IOPS\n", res.RandomReadIOPS, res.RawRandomReadIOPS)
	fmt.Fprintf(o.Log, "index RAM with %d unique blocks...\n", o.IndexBlocks)
	if err := indexRAM(filepath.Join(dir, "index"), o, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "  %.2f bytes per block\n", res.IndexRAMBytesPerBlock)
	if res.DeviceResult, err = runDevicePath(dir, o); err != nil {
		return res, err
	}
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

func writeRawFile(path string, o Options) (vfs.File, error) {
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

// readRounds measures random reads of the store's device and of the plain
// file of the same bytes in readRoundCount rounds (ReadTime in all per
// side), each side going first in every other round, so that the disk's
// drift over time weighs on both alike. It returns the two rates in reads
// per second.
func readRounds(o Options, store, plain func([]byte, int64) error) (float64, float64, error) {
	var n [2]int64
	var t [2]time.Duration
	reads := [2]func([]byte, int64) error{store, plain}
	round := o.ReadTime / readRoundCount
	for r := range readRoundCount {
		for i := range 2 {
			side := (r + i) % 2 // each side goes first in every other round
			start := time.Now()
			k, err := randomReads(o, o.IngestBytes, round, reads[side])
			if err != nil {
				return 0, 0, err
			}
			n[side] += k
			t[side] += time.Since(start)
		}
	}
	return float64(n[0]) / t[0].Seconds(), float64(n[1]) / t[1].Seconds(), nil
}

const readRoundCount = 6

// randomReads runs Readers goroutines reading random aligned 4 KiB blocks of
// [0, size) for d and returns how many reads completed.
func randomReads(o Options, size int64, d time.Duration, read func([]byte, int64) error) (int64, error) {
	blocks := size / blockstore.BlockSize
	var total atomic.Int64
	var firstErr atomic.Pointer[error]
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range o.Readers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
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
	return total.Load(), nil
}

// indexRAM fills an index with IndexBlocks unique keys through its public
// API and reports level one's bytes per entry, LevelDB's disk bytes per
// entry, and, as a cross-check of the first, the Go heap that reopening the
// full index takes (what a restarted daemon holds) per entry. For that
// figure the index's fixed-size parts (LevelDB's memtable and block cache,
// the neighbour cache) are made small, so that what remains is what grows
// with the number of blocks.
func indexRAM(dir string, o Options, res *Result) error {
	small := index.Options{CacheEntries: 1024, BlockCacheBytes: 1 << 20, WriteBufferBytes: 1 << 20}
	ix, err := index.Open(dir, small)
	if err != nil {
		return err
	}
	ops := make([]index.Op, 0, 65536)
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
		if len(ops) == cap(ops) || i == o.IndexBlocks-1 {
			ix.Seal()
			if err := ix.Apply(ops); err != nil {
				ix.Close()
				return err
			}
			ops = ops[:0]
		}
	}
	st := ix.Stats()
	if err := ix.Close(); err != nil {
		return err
	}
	res.IndexBlocks = st.Entries
	res.IndexRAMBytesPerBlock = float64(st.FilterBytes) / float64(st.Entries)

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	h0 := heap()
	ix, err = index.Open(dir, small)
	if err != nil {
		return err
	}
	h1 := heap()
	runtime.KeepAlive(ix)
	if err := ix.Close(); err != nil {
		return err
	}
	res.IndexHeapBytesPerBlock = (float64(h1) - float64(h0)) / float64(st.Entries)

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
