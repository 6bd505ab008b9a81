package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"hash/crc32"
	"sync"

	"blockhash/index"
)

// SecretSize is the size of a dedup domain's secret.
const SecretSize = 32

// keyer computes the keys of blocks written to the devices of one dedup
// domain. The store's default domain keys a block by its digest (the
// store's hash, keyer.macs nil); any other domain by HMAC-SHA-256 under
// the domain's secret, so the same content has a different key in each
// domain and is stored once per domain: a guest cannot learn, by the
// speed of a duplicate write, whether another domain holds a block. The
// CRC-32C half of a key is the content's in every domain.
//
// A keyer is immutable once made and safe for concurrent use: each
// goroutine takes an HMAC state of its own from the pool.
type keyer struct {
	alg    HashAlg
	domain string
	secret [SecretSize]byte
	macs   *sync.Pool // of hash.Hash; nil for the default domain
}

func defaultKeyer(alg HashAlg) *keyer { return &keyer{alg: alg} }

func domainKeyer(name string, secret [SecretSize]byte) *keyer {
	k := &keyer{alg: SHA256, domain: name, secret: secret}
	k.macs = &sync.Pool{New: func() any { return hmac.New(sha256.New, k.secret[:]) }}
	return k
}

// blockKey is the key of one 4 KiB block; zero blocks get the zero Key
// in every domain (they are not stored).
func (k *keyer) blockKey(b []byte) index.Key {
	if k.macs == nil {
		return k.alg.blockKey(b)
	}
	if isZero(b) {
		return index.Key{}
	}
	h := k.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(b)
	var out index.Key
	h.Sum(out.Sum[:0])
	k.macs.Put(h)
	out.CRC = crc32.Checksum(b, castagnoli)
	if out.IsZero() {
		out.CRC = 1
	}
	return out
}
