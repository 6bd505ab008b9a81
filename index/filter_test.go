package index

import (
	"math/rand/v2"
	"testing"
)

// TestFilterModel checks the filter against a reference multiset through
// random adds and removes, with growth and wrap-around.
func TestFilterModel(t *testing.T) {
	for _, space := range []uint32{50, 5000, 0} { // small spaces force many equal fingerprints
		r := rand.New(rand.NewPCG(uint64(space), 7))
		f := NewFilter(0)
		model := map[uint32]int{}
		var present []uint32
		draw := func() uint32 {
			var fp uint32
			if space == 0 {
				fp = r.Uint32()
			} else {
				fp = r.Uint32N(space) * (0xffffffff / space) // spread across the table, incl. the end
			}
			if fp == 0 {
				fp = 1
			}
			return fp
		}
		for i := range 40000 {
			if r.IntN(3) > 0 || len(present) == 0 {
				fp := draw()
				f.Add(fp)
				model[fp]++
				present = append(present, fp)
			} else {
				j := r.IntN(len(present))
				fp := present[j]
				present[j] = present[len(present)-1]
				present = present[:len(present)-1]
				if !f.Remove(fp) {
					t.Fatalf("step %d: remove of present %#x failed", i, fp)
				}
				model[fp]--
			}
			if i%997 == 0 {
				for fp, c := range model {
					if got := f.Contains(fp); got != (c > 0) {
						t.Fatalf("space %d step %d: Contains(%#x)=%v, model count %d", space, i, fp, got, c)
					}
				}
			}
		}
		if f.Len() != len(present) {
			t.Fatalf("Len %d, want %d", f.Len(), len(present))
		}
		if f.Remove(0xdeadbeef) && model[0xdeadbeef] == 0 {
			t.Fatal("removed an absent fingerprint")
		}
	}
}

func TestFilterBytesPerEntry(t *testing.T) {
	f := NewFilter(0)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= 300000; i++ {
		f.Add(r.Uint32() | 1)
		if i > 10000 {
			if bpe := float64(f.Bytes()) / float64(f.Len()); bpe > 8.0001 {
				t.Fatalf("%d entries: %.2f bytes each", i, bpe)
			}
		}
	}
}

func BenchmarkFilterContainsMiss(b *testing.B) {
	f := NewFilter(2_000_000)
	r := rand.New(rand.NewPCG(1, 2))
	for range 2_000_000 {
		f.Add(r.Uint32() | 1)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		f.Contains(r.Uint32() | 1)
	}
}
