//go:build rados

package rados

import (
	"fmt"
	"sync"
)

// Refs is one host's references (design.md 4.5): a count per location its
// maps name or it has pinned, and the pin lock that orders its lookups
// against a GC round's snapshot. A location read from the index (or just
// written) and added inside Do is in every snapshot Publish takes after
// Do returns; a lookup that starts after a snapshot sees the index as it
// was when the round began. It is safe for concurrent use.
type Refs struct {
	c    *Conn
	host uint16
	// pin is held shared by Do, exclusively while Publish takes its
	// snapshot (no I/O under it).
	pin sync.RWMutex
	// mu guards n.
	mu sync.Mutex
	n  map[Loc]int
}

// NewRefs returns host's empty reference counts.
func (c *Conn) NewRefs(host uint16) *Refs {
	return &Refs{c: c, host: host, n: map[Loc]int{}}
}

// Do runs f holding the pin lock shared: index lookups and puts in f, and
// the Add of what they gave, form one step against GC rounds.
func (r *Refs) Do(f func() error) error {
	r.pin.RLock()
	defer r.pin.RUnlock()
	return f()
}

// Add counts one more reference to each location (zero is skipped).
func (r *Refs) Add(locs ...Loc) {
	r.mu.Lock()
	for _, l := range locs {
		if l != 0 {
			r.n[l]++
		}
	}
	r.mu.Unlock()
}

// Drop counts one reference less to each location; dropping one not held
// is an error and changes nothing.
func (r *Refs) Drop(locs ...Loc) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range locs {
		if r.n[l] == 0 {
			return fmt.Errorf("%w: drop of %v, not referenced", ErrArg, l)
		}
	}
	for _, l := range locs {
		if r.n[l]--; r.n[l] == 0 {
			delete(r.n, l)
		}
	}
	return nil
}

// AddIfHeld counts one more reference to l only if l has one already
// (a location a host's own cache gave: one it no longer references may
// be garbage already, so it must be looked up again), and says whether
// it did.
func (r *Refs) AddIfHeld(l Loc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l == 0 || r.n[l] == 0 {
		return false
	}
	r.n[l]++
	return true
}

// Held reports whether l is referenced.
func (r *Refs) Held(l Loc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[l] > 0
}

// Exclusive runs f with the pin lock held exclusively: no Do runs
// meanwhile (a round answer re-pointing maps along forwards, Remap).
func (r *Refs) Exclusive(f func() error) error {
	r.pin.Lock()
	defer r.pin.Unlock()
	return f()
}

// Len is the number of distinct locations referenced.
func (r *Refs) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.n)
}

// snapshot lists the referenced locations, with every Do in progress
// finished first.
func (r *Refs) snapshot() []Loc {
	r.pin.Lock()
	r.mu.Lock()
	out := make([]Loc, 0, len(r.n))
	for l := range r.n {
		out = append(out, l)
	}
	r.mu.Unlock()
	r.pin.Unlock()
	return out
}

// Publish writes the host's references for round (bh.refs.<host>); a
// host's ServeRounds prepare calls it before the round is acknowledged.
func (r *Refs) Publish(round uint64) error {
	b := encodeRefs(round, r.host, r.snapshot())
	if err := r.c.io.WriteFull(refsObject(r.host), b); err != nil {
		return r.c.wrap("publish references", err)
	}
	return nil
}

// readRefs reads host's published references, which must be for round
// minRound or later.
func (c *Conn) readRefs(host uint16, minRound uint64) (map[Loc]bool, error) {
	oid := refsObject(host)
	b, err := c.ReadAll(oid)
	if err != nil {
		return nil, err
	}
	round, h, locs, err := decodeRefs(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", oid, err)
	}
	if h != host || round < minRound {
		return nil, fmt.Errorf("%w: %s is host %d's for round %d, want host %d round %d or later", ErrBadValue, oid, h, round, host, minRound)
	}
	out := make(map[Loc]bool, len(locs))
	for _, l := range locs {
		out[l] = true
	}
	return out, nil
}
