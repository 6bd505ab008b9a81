package engine

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"slices"
	"sync"
	"sync/atomic"

	"blockhash/index"
)

// DefaultDomain is the name users give the store's default dedup domain
// (stored as the empty name): the devices made without --domain.
const DefaultDomain = "default"

// domainSet is the store's dedup domains, by name. A domain is not a
// file of its own: its name and secret are in the header of each of its
// volumes (devmap.go), written with the volume, so a domain exists while
// one of its volumes does and its secret cannot be lost apart from them.
// At open the set is rebuilt from the headers (adopt); a new domain is
// made when the first device names it (create).
//
// Readers (the write path, verifiers) load the current table through an
// atomic pointer and take no lock; mu serialises the writers, which
// replace the table (copy on write).
type domainSet struct {
	def *keyer
	mu  sync.Mutex // guards replacing tab
	tab atomic.Pointer[domainTable]
}

// domainTable is the domains other than the default, by name and as a
// list for the verifiers; immutable once stored.
type domainTable struct {
	byName map[string]*keyer
	all    []*keyer
}

func newDomainSet(alg HashAlg) *domainSet {
	d := &domainSet{def: defaultKeyer(alg)}
	d.tab.Store(&domainTable{byName: map[string]*keyer{}})
	return d
}

// get returns the keyer of domain name ("" for the default), or nil.
func (d *domainSet) get(name string) *keyer {
	if name == "" {
		return d.def
	}
	return d.tab.Load().byName[name]
}

// all lists the domains other than the default.
func (d *domainSet) all() []*keyer { return d.tab.Load().all }

// adopt registers domain name with secret, read from a volume header. A
// name already known with another secret is damage: ErrCorrupt (the
// volume's writes could not share with the rest of its domain).
func (d *domainSet) adopt(name string, secret [SecretSize]byte) error {
	if name == "" {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.tab.Load()
	if k, ok := cur.byName[name]; ok {
		if k.secret != secret {
			return fmt.Errorf("%w: dedup domain %s has another secret in an older volume", ErrCorrupt, name)
		}
		return nil
	}
	d.store(cur, domainKeyer(name, secret))
	return nil
}

// create returns domain name's keyer, making the domain (a new random
// secret) if no volume names it yet. The caller writes the secret into
// the header of the volume it makes.
func (d *domainSet) create(name string) (*keyer, error) {
	if name == "" {
		return d.def, nil
	}
	if ValidName(name) != nil {
		return nil, fmt.Errorf("%w: dedup domain name %q (use 1-64 letters, digits, '.', '_', '-')", ErrInvalid, name)
	}
	if d.def.alg != SHA256 {
		return nil, fmt.Errorf("%w: dedup domains need a sha256 store (this one uses %s)", ErrInvalid, d.def.alg)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.tab.Load()
	if k, ok := cur.byName[name]; ok {
		return k, nil
	}
	var secret [SecretSize]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("dedup domain %s: %w", name, err)
	}
	k := domainKeyer(name, secret)
	d.store(cur, k)
	return k, nil
}

// store replaces the table with cur plus k; the caller holds mu.
func (d *domainSet) store(cur *domainTable, k *keyer) {
	next := &domainTable{byName: make(map[string]*keyer, len(cur.byName)+1), all: append(slices.Clone(cur.all), k)}
	for n, v := range cur.byName {
		next.byName[n] = v
	}
	next.byName[k.domain] = k
	d.tab.Store(next)
}

// match finds the key data has in some domain for which ok holds: the
// default domain's first, then the others'. A verifier that knows the
// key a block must have (a slot's record, a map entry) does not know
// the domain of the volumes naming it; blocks of two domains never share
// a slot, so the key that fits is the block's.
func (d *domainSet) match(data []byte, ok func(index.Key) bool) (index.Key, bool) {
	k := d.def.blockKey(data)
	if ok(k) {
		return k, true
	}
	for _, kr := range d.all() {
		if dk := kr.blockKey(data); ok(dk) {
			return dk, true
		}
	}
	return k, false
}

// verify reports whether data is the block with key k, in any domain.
// The CRC-32C half is the content's in every domain: a block that fails
// it is not hashed further.
func (d *domainSet) verify(data []byte, k index.Key) bool {
	if k.IsZero() {
		return isZero(data)
	}
	if crc32.Checksum(data, castagnoli) != k.CRC {
		return false
	}
	_, ok := d.match(data, func(x index.Key) bool { return x == k })
	return ok
}
