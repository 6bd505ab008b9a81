package pool

import "testing"

// countRefs is a refCounter for tests: location -> references.
type countRefs map[uint64]int

func (c countRefs) dropRef(l uint64) { c[l]-- }

func entry(k byte, loc uint64) Entry {
	var e Entry
	e.Key[0] = k
	e.Loc = loc
	return e
}

// A partial write maps its blocks only if the blocks it read and merged
// (its edges) still hold what it read: a write to another sector of the
// block meanwhile makes it merge again instead of undoing that write.
func TestDevMapSetIf(t *testing.T) {
	var zero [KeySize]byte
	tests := []struct {
		name  string
		edges func(m *devMap) []edge
		ok    bool
	}{
		{"no edges", func(*devMap) []edge { return nil }, true},
		{"edge unchanged", func(m *devMap) []edge { return []edge{{1, m.cur[1].Key}} }, true},
		{"zero edge unchanged", func(*devMap) []edge { return []edge{{3, zero}} }, true},
		{"edge written meanwhile", func(*devMap) []edge { return []edge{{1, entry(9, 0).Key}} }, false},
		{"zero edge written meanwhile", func(*devMap) []edge { return []edge{{2, zero}} }, false},
		{"second edge written meanwhile", func(m *devMap) []edge { return []edge{{1, m.cur[1].Key}, {2, zero}} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refs := countRefs{}
			m := newDevMap(refs)
			m.load(1, entry(1, 10))
			m.load(2, entry(2, 20))
			edges := tc.edges(m)
			es := []Entry{entry(5, 50), entry(6, 60), entry(7, 70)}
			if got := m.setIf(1, es, edges); got != tc.ok {
				t.Fatalf("setIf = %v, want %v", got, tc.ok)
			}
			want := map[uint64]Entry{1: entry(1, 10), 2: entry(2, 20)}
			if tc.ok {
				want = map[uint64]Entry{1: es[0], 2: es[1], 3: es[2]}
			}
			for b := uint64(0); b < 5; b++ {
				if got := m.get(b); got != want[b] {
					t.Errorf("block %d = %v, want %v", b, got, want[b])
				}
			}
			if !tc.ok && m.dirtyLen() != 0 {
				t.Errorf("a refused setIf left %d dirty blocks", m.dirtyLen())
			}
		})
	}
}
