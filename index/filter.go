package index

// Filter is the level-one table: a multiset of 32-bit fingerprints in an
// open-addressing table with linear probing. A fingerprint's home slot is
// its value scaled to the table size, so the table can grow without the
// original keys. Deletion shifts later entries back (no tombstones).
//
// Filter is not safe for concurrent use; Index guards it.
type Filter struct {
	slots []uint32 // 0 = empty
	n     int
}

const (
	filterMinSize = 1024
	filterMaxLoad = 0.8
	filterGrow    = 1.6
)

// NewFilter returns a filter sized for about n fingerprints.
func NewFilter(n int) *Filter {
	size := max(filterMinSize, int(float64(n)/0.7))
	return &Filter{slots: make([]uint32, size)}
}

func (f *Filter) home(fp uint32) int { return int((uint64(fp) * uint64(len(f.slots))) >> 32) }

// Len is the number of fingerprints held.
func (f *Filter) Len() int { return f.n }

// Bytes is the memory the table occupies.
func (f *Filter) Bytes() int { return 4 * len(f.slots) }

// Add inserts fp (a fingerprint may be present several times).
func (f *Filter) Add(fp uint32) {
	if float64(f.n+1) > filterMaxLoad*float64(len(f.slots)) {
		f.resize(int(float64(len(f.slots)) * filterGrow))
	}
	f.place(fp)
	f.n++
}

func (f *Filter) place(fp uint32) {
	size := len(f.slots)
	for i := f.home(fp); ; i++ {
		if i == size {
			i = 0
		}
		if f.slots[i] == 0 {
			f.slots[i] = fp
			return
		}
	}
}

func (f *Filter) resize(size int) {
	old := f.slots
	f.slots = make([]uint32, size)
	for _, fp := range old {
		if fp != 0 {
			f.place(fp)
		}
	}
}

// Contains reports whether fp may be present.
func (f *Filter) Contains(fp uint32) bool {
	size := len(f.slots)
	for i := f.home(fp); ; i++ {
		if i == size {
			i = 0
		}
		switch f.slots[i] {
		case fp:
			return true
		case 0:
			return false
		}
	}
}

// Remove deletes one copy of fp. It reports whether one was present.
func (f *Filter) Remove(fp uint32) bool {
	size := len(f.slots)
	i := f.home(fp)
	for ; ; i++ {
		if i == size {
			i = 0
		}
		if f.slots[i] == fp {
			break
		}
		if f.slots[i] == 0 {
			return false
		}
	}
	// Backward-shift deletion: move up every later entry of the cluster
	// whose home is not between the hole and its own position.
	j := i
	for {
		f.slots[i] = 0
		for {
			j++
			if j == size {
				j = 0
			}
			if f.slots[j] == 0 {
				f.n--
				return true
			}
			h := f.home(f.slots[j])
			// Can the entry at j move to the hole at i? Only if its home
			// is not cyclically in (i, j].
			if i <= j {
				if h <= i || h > j {
					break
				}
			} else if h <= i && h > j {
				break
			}
		}
		f.slots[i] = f.slots[j]
		i = j
	}
}
