package engine

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// benchIngest writes size bytes of unique blocks in 1 MiB requests from 4
// goroutines, then flushes; with dup set it first writes the same data to
// another device so every block is a duplicate.
func benchIngest(b *testing.B, dup bool) {
	const size = 256 << 20
	base := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(base); i += 8 {
		binary.LittleEndian.PutUint64(base[i:], r.Uint64())
	}
	write := func(d *Device) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range benchWriters {
			wg.Go(func() {
				buf := make([]byte, 1<<20)
				for {
					c := next.Add(1) - 1
					if c >= size>>20 {
						return
					}
					copy(buf, base)
					for i := 0; i < len(buf); i += BlockSize {
						binary.LittleEndian.PutUint64(buf[i:], uint64(c)<<20|uint64(i/BlockSize)+1)
					}
					if _, err := d.WriteAt(buf, c<<20); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if err := d.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		e := benchStore(b)
		src, _ := e.CreateDevice("src", size)
		dst, _ := e.CreateDevice("dst", size)
		if dup {
			write(src)
		}
		b.StartTimer()
		write(dst)
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
}

func BenchmarkIngestUnique(b *testing.B)    { benchIngest(b, false) }
func BenchmarkIngestDuplicate(b *testing.B) { benchIngest(b, true) }

func BenchmarkBlockKey(b *testing.B) {
	blk := block(1)
	b.SetBytes(BlockSize)
	for b.Loop() {
		SHA256.blockKey(blk)
	}
}

var benchWriters = 4

// BenchmarkRandomRead4K measures random 4 KiB reads (map lookup, O_DIRECT
// slot read, CRC check) from 16 readers per P over 64 MiB of stored unique
// blocks: QD32 with the 2 Ps of `go test` on a 2-core machine. `blockhash
// bench` sets this against a plain file of the same disk.
func BenchmarkRandomRead4K(b *testing.B) {
	const size = 64 << 20
	e := benchStore(b)
	defer e.Close()
	d, err := e.CreateDevice("d", size)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for c := int64(0); c < size>>20; c++ {
		for i := 0; i < len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], uint64(c)<<20|uint64(i)+1)
		}
		if _, err := d.WriteAt(buf, c<<20); err != nil {
			b.Fatal(err)
		}
	}
	if err := d.Flush(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(BlockSize)
	b.ResetTimer()
	var seed atomic.Uint64
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 7))
		p := make([]byte, BlockSize)
		for pb.Next() {
			if _, err := d.ReadAt(p, r.Int64N(size/BlockSize)*BlockSize); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// benchStore opens a new store of 1 GiB extents with no background commits.
func benchStore(b *testing.B) *Engine {
	dir := b.TempDir()
	if err := Create(dir, Options{ExtentSize: 1 << 30}); err != nil {
		b.Fatal(err)
	}
	e, err := Open(dir, Options{CommitInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	return e
}
