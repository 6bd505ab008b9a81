package pool

import "sync"

// keyCache is a host's cache of content key -> location for the blocks it
// stored or merged: a write finds a duplicate here without asking the
// pool's index. A location from the cache is used only if the host still
// references it (rados.Refs.AddIfHeld): one it let go may be garbage by
// now. It forgets everything when full (a cache, rebuilt by use).
//
// mu guards m.
type keyCache struct {
	mu  sync.Mutex
	max int
	m   map[[KeySize]byte]uint64
}

func newKeyCache(max int) *keyCache { return &keyCache{max: max, m: map[[KeySize]byte]uint64{}} }

func (c *keyCache) get(k [KeySize]byte) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *keyCache) put(k [KeySize]byte, l uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = l
}

// remap follows compaction's moves.
func (c *keyCache) remap(moved map[uint64]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, l := range c.m {
		if nw, ok := moved[l]; ok {
			c.m[k] = nw
		}
	}
}
