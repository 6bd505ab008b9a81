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
		dir := b.TempDir()
		if err := Create(dir, Options{ExtentSize: 1 << 30}); err != nil {
			b.Fatal(err)
		}
		e, err := Open(dir, Options{CommitInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
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
