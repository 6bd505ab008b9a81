package ublk

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

const testBackendSize = 4 << 20

type statsBackend interface {
	Backend
	FUAWriter
	Stats() Stats
}

func testBackends(t *testing.T) map[string]func(t *testing.T) statsBackend {
	return map[string]func(t *testing.T) statsBackend{
		"mem": func(t *testing.T) statsBackend { return NewMemBackend(testBackendSize) },
		"file": func(t *testing.T) statsBackend {
			b, err := OpenFileBackend(filepath.Join(t.TempDir(), "img"), testBackendSize)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed
	}
	return b
}

func readAll(t *testing.T, b Backend, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := b.ReadAt(p, off); err != nil {
		t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
	}
	return p
}

func TestBackends(t *testing.T) {
	for name, mk := range testBackends(t) {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			// Fresh backend reads zeros.
			if got := readAll(t, b, 0, 8192); !bytes.Equal(got, make([]byte, 8192)) {
				t.Fatal("fresh backend not zero")
			}
			// Writes across a 64 KiB chunk boundary round-trip.
			w := pattern(100000, 1)
			off := int64(65536 - 5120)
			if _, err := b.WriteAt(w, off); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, b, off, len(w)); !bytes.Equal(got, w) {
				t.Fatal("write/read mismatch")
			}
			// FUA write.
			fw := pattern(4096, 9)
			if _, err := b.WriteAtFUA(fw, 1<<20); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, b, 1<<20, 4096); !bytes.Equal(got, fw) {
				t.Fatal("FUA write/read mismatch")
			}
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			// Discard a range inside the written data: zeros there, data
			// around it intact.
			if err := b.Discard(65536, 65536); err != nil {
				t.Fatal(err)
			}
			got := readAll(t, b, off, len(w))
			want := append([]byte(nil), w...)
			clear(want[5120 : 5120+65536])
			if !bytes.Equal(got, want) {
				t.Fatal("discard zeroed the wrong range")
			}
			// WriteZeroes of a partial chunk.
			if err := b.WriteZeroes(off, 512); err != nil {
				t.Fatal(err)
			}
			clear(want[:512])
			if got := readAll(t, b, off, len(w)); !bytes.Equal(got, want) {
				t.Fatal("write zeroes zeroed the wrong range")
			}
			// Last sector is usable.
			if _, err := b.WriteAt(pattern(512, 3), testBackendSize-512); err != nil {
				t.Fatal(err)
			}
			s := b.Stats()
			wantStats := Stats{Reads: 5, Writes: 3, Flushes: 1, Discards: 1, WriteZeroes: 1, FUAWrites: 1}
			if s != wantStats {
				t.Fatalf("stats = %+v, want %+v", s, wantStats)
			}
		})
	}
}

func TestMemBackendSparse(t *testing.T) {
	m := NewMemBackend(1 << 30)
	if _, err := m.WriteAt(make([]byte, 4096), 512<<20); err != nil {
		t.Fatal(err)
	}
	if m.Chunks() != 1 {
		t.Fatalf("chunks = %d, want 1", m.Chunks())
	}
	if err := m.Discard(512<<20, memChunkSize); err != nil {
		t.Fatal(err)
	}
	if m.Chunks() != 0 {
		t.Fatalf("chunks after discard = %d, want 0", m.Chunks())
	}
	if _, err := m.WriteAt(make([]byte, 512), 1<<30); err == nil {
		t.Fatal("write past the end accepted")
	}
}

func TestFileBackendPunchesHoles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	b, err := OpenFileBackend(path, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.WriteAt(pattern(4<<20, 5), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	before := allocated(t, path)
	if err := b.Discard(0, 4<<20); err != nil {
		t.Fatal(err)
	}
	after := allocated(t, path)
	if after >= before {
		t.Fatalf("discard did not deallocate: %d -> %d bytes", before, after)
	}
	if st, _ := os.Stat(path); st.Size() != 8<<20 {
		t.Fatalf("file size %d after discard, want %d", st.Size(), 8<<20)
	}
	// A shorter existing file is extended, a longer one left alone.
	b2, err := OpenFileBackend(path, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	b2.Close()
	if st, _ := os.Stat(path); st.Size() != 16<<20 {
		t.Fatalf("file not extended: %d", st.Size())
	}
}

func TestBackendsConcurrent(t *testing.T) {
	for name, mk := range testBackends(t) {
		t.Run(name, func(t *testing.T) {
			b := mk(t)
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					rng := rand.New(rand.NewSource(int64(g)))
					// Each goroutine owns every 8th 4 KiB block.
					for i := 0; i < 200; i++ {
						blk := int64(rng.Intn(testBackendSize/4096/8)*8 + g)
						p := pattern(4096, byte(blk))
						if _, err := b.WriteAt(p, blk*4096); err != nil {
							t.Error(err)
							return
						}
						got := make([]byte, 4096)
						if _, err := b.ReadAt(got, blk*4096); err != nil || !bytes.Equal(got, p) {
							t.Errorf("goroutine %d block %d: mismatch (%v)", g, blk, err)
							return
						}
						if i%50 == 0 {
							_ = b.Discard(blk*4096, 4096)
						}
					}
				}(g)
			}
			wg.Wait()
		})
	}
}

func BenchmarkMemBackendWrite4K(b *testing.B) {
	m := NewMemBackend(1 << 30)
	p := pattern(4096, 1)
	b.SetBytes(4096)
	b.RunParallel(func(pb *testing.PB) {
		i := int64(0)
		for pb.Next() {
			if _, err := m.WriteAt(p, (i*4096)%(1<<30)); err != nil {
				b.Fatal(err)
			}
			i += 7
		}
	})
}

func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func ExampleMemBackend() {
	m := NewMemBackend(1 << 20)
	m.WriteAt([]byte("hello"), 4096)
	m.Flush()
	p := make([]byte, 5)
	m.ReadAt(p, 4096)
	fmt.Println(string(p), m.Stats().Writes, m.Stats().Flushes)
	// Output: hello 1 1
}
