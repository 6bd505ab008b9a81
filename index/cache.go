package index

import "sync"

// cache holds index entries of recently seen neighbourhoods, bounded to
// about max entries: two generations, the older dropped when the newer fills.
type cache struct {
	max int

	// mu guards cur, old and removals.
	mu       sync.Mutex
	cur, old map[Key]uint64
	removals uint64 // counts forget calls; Prime tokens compare against it
}

func newCache(max int) *cache {
	return &cache{max: max, cur: make(map[Key]uint64), old: make(map[Key]uint64)}
}

func (c *cache) get(k Key) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.cur[k]; ok {
		return s, true
	}
	if s, ok := c.old[k]; ok {
		c.putLocked(k, s)
		return s, true
	}
	return 0, false
}

func (c *cache) putLocked(k Key, s uint64) {
	if len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, make(map[Key]uint64, c.max/2)
	}
	c.cur[k] = s
}

func (c *cache) forget(k Key) {
	c.mu.Lock()
	delete(c.cur, k)
	delete(c.old, k)
	c.removals++
	c.mu.Unlock()
}

func (c *cache) token() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removals
}

// prime adds entries unless a forget happened since tok was taken (an entry
// read before that forget may name a freed slot).
func (c *cache) prime(tok uint64, entries []Entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removals != tok {
		return false
	}
	for _, e := range entries {
		c.putLocked(e.Key, e.Slot)
	}
	return true
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
