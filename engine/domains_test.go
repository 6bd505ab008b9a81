package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"blockhash/index"
)

// image is n distinct blocks (the same bytes whoever writes them).
func image(n int) []byte {
	var b []byte
	for i := range n {
		b = append(b, block(uint64(5000+i))...)
	}
	return b
}

func createIn(t *testing.T, e *Engine, name, domain string, size int64) *Device {
	t.Helper()
	d, err := e.CreateDevice(name, size, CreateOptions{Domain: domain})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func domainRow(t *testing.T, s Stats, name string) DomainStats {
	t.Helper()
	for _, d := range s.Domains {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no domain %s in %+v", name, s.Domains)
	return DomainStats{}
}

func deviceRow(t *testing.T, s Stats, name string) DeviceStats {
	t.Helper()
	for _, d := range s.Devices {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no device %s", name)
	return DeviceStats{}
}

// Two domains storing the same image store it twice; the devices of one
// domain share it; the default domain is a third copy. The figures
// survive a reopen (the secrets are in the volume headers), and a device
// made later in a domain shares with it at once.
func TestDomainsStoreOncePerDomain(t *testing.T) {
	const n = 64
	img := image(n)
	dir, e := newStore(t, Options{})
	for _, d := range []struct{ name, domain string }{{"a1", "tenant-a"}, {"a2", "tenant-a"}, {"b1", "tenant-b"}, {"plain", ""}, {"plain2", DefaultDomain}} {
		dev := createIn(t, e, d.name, d.domain, 1<<20)
		if _, err := dev.WriteAt(img, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	check := func(e *Engine, a int) {
		t.Helper()
		s, err := e.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.UniqueBlocks != 3*n {
			t.Fatalf("stored %d blocks, want %d (once per domain)", s.UniqueBlocks, 3*n)
		}
		if got := domainRow(t, s, "tenant-a"); got.Devices != a || got.DataBlocks != uint64(a*n) || got.StoredBlocks != n {
			t.Fatalf("tenant-a: %+v", got)
		}
		if got := domainRow(t, s, "tenant-b"); got.Devices != 1 || got.DataBlocks != n || got.StoredBlocks != n || got.SavedPercent != 0 {
			t.Fatalf("tenant-b: %+v", got)
		}
		if got := domainRow(t, s, DefaultDomain); got.Devices != 2 || got.StoredBlocks != n || got.SavedPercent != 50 {
			t.Fatalf("default: %+v", got)
		}
		if d := deviceRow(t, s, "a1"); d.Domain != "tenant-a" || d.SharedBlocks != n {
			t.Fatalf("a1 shares %d blocks (domain %q), want %d with a2", d.SharedBlocks, d.Domain, n)
		}
		if d := deviceRow(t, s, "b1"); d.UniqueBlocks != n || d.SharedBlocks != 0 {
			t.Fatalf("b1: unique %d shared %d: it shares with no other domain", d.UniqueBlocks, d.SharedBlocks)
		}
	}
	check(e, 2)
	e = reopen(t, dir, e, Options{})
	check(e, 2)
	a3 := createIn(t, e, "a3", "tenant-a", 1<<20)
	if _, err := a3.WriteAt(img, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	check(e, 3)
	for _, name := range []string{"a1", "a3", "b1", "plain"} {
		d, _ := e.Device(name)
		if !bytes.Equal(mustRead(t, d, 0, int64(len(img))), img) {
			t.Fatalf("%s reads back other data", name)
		}
	}
	fsckOK(t, e)
	if rep, err := e.Scrub(context.Background(), ScrubOptions{}); err != nil || rep.NewDamaged != 0 || rep.BlocksChecked != 3*n {
		t.Fatalf("scrub: %v %+v, want %d blocks checked and no damage", err, rep, 3*n)
	}
}

// The keys of one block differ in every domain, and none is the plain
// digest; each keyer is deterministic.
func TestDomainKeys(t *testing.T) {
	b := block(1)
	def := defaultKeyer(SHA256)
	a := domainKeyer("a", [SecretSize]byte{1})
	a2 := domainKeyer("a", [SecretSize]byte{1})
	c := domainKeyer("c", [SecretSize]byte{2})
	ka, kc, kd := a.blockKey(b), c.blockKey(b), def.blockKey(b)
	if ka == kc || ka == kd || kc == kd {
		t.Fatal("a block has the same key in two domains")
	}
	if ka != a2.blockKey(b) || ka.CRC != kd.CRC {
		t.Fatal("a domain's key is not a function of its secret and the content")
	}
	if !a.blockKey(make([]byte, BlockSize)).IsZero() {
		t.Fatal("a zero block has a key")
	}
}

// A snapshot and a clone stay in their source's domain: the clone's
// writes share with the domain, not with the default.
func TestDomainSnapshotAndClone(t *testing.T) {
	_, e := newStore(t, Options{})
	img := image(16)
	a := createIn(t, e, "a", "t1", 1<<20)
	writeBlocks(t, a, 0, img)
	if err := e.Snapshot("a", "s1"); err != nil {
		t.Fatal(err)
	}
	if err := e.Clone("a@s1", "c"); err != nil {
		t.Fatal(err)
	}
	c, _ := e.Device("c")
	s1, _ := e.Device("a@s1")
	if c.Domain() != "t1" || s1.Domain() != "t1" {
		t.Fatalf("clone in %q, snapshot in %q, want t1", c.Domain(), s1.Domain())
	}
	writeBlocks(t, c, 100, img[:BlockSize]) // t1's block 0 again, elsewhere
	p := createIn(t, e, "p", "", 1<<20)
	writeBlocks(t, p, 0, img)
	e.Flush()
	s, _ := e.Stats()
	if s.UniqueBlocks != 32 {
		t.Fatalf("stored %d blocks, want 32 (16 in t1, 16 in the default)", s.UniqueBlocks)
	}
	fsckOK(t, e)
}

// Bad domain requests are refused and change nothing.
func TestDomainRefusals(t *testing.T) {
	_, e := newStore(t, Options{})
	createIn(t, e, "a", "t1", 1<<20)
	for _, tc := range []struct {
		name, domain string
	}{
		{"x", "bad name!"},
		{"x", "@"},
		{"a", "t2"}, // exists
	} {
		if _, err := e.CreateDevice(tc.name, 1<<20, CreateOptions{Domain: tc.domain}); err == nil {
			t.Fatalf("create %s in %q: accepted", tc.name, tc.domain)
		}
	}
	if _, err := e.Device("x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused create left a device: %v", err)
	}
	if got := len(e.doms.all()); got != 1 {
		t.Fatalf("%d domains, want 1 (refusals make none)", got)
	}
	a, _ := e.Device("a")
	if err := a.InDomain("t2"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("InDomain(t2): %v", err)
	}
	if err := a.InDomain("t1"); err != nil {
		t.Fatal(err)
	}
	p := createIn(t, e, "p", "", 1<<20)
	if p.InDomain(DefaultDomain) != nil || p.InDomain("t1") == nil {
		t.Fatal("a default-domain device's InDomain")
	}
	// Replication keeps to the default domain.
	if err := e.Snapshot("a", "s"); err != nil {
		t.Fatal(err)
	}
	s, _ := e.Device("a@s")
	if err := s.Keys(0, make([]index.Key, 4)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Keys of a domain snapshot: %v", err)
	}
	if _, err := e.BeginReceive(ReceiveSpec{Device: "a", Snap: "r", Size: 1 << 20, Force: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("receive into a domain device: %v", err)
	}
	// A SHA-1 store has no domains.
	_, e1 := newStore(t, Options{Hash: SHA1})
	if _, err := e1.CreateDevice("a", 1<<20, CreateOptions{Domain: "t1"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("domain in a sha1 store: %v", err)
	}
}

// Damage to a domain's block is found by scrub and fsck like any other.
func TestDomainDamageFound(t *testing.T) {
	dir, e := newStore(t, Options{})
	a := createIn(t, e, "a", "t1", 1<<20)
	writeBlocks(t, a, 0, image(8))
	e.Flush()
	ent, _ := a.m.get(3)
	damageSlot(t, dir, e, ent.Slot)
	rep, err := e.Scrub(context.Background(), ScrubOptions{})
	if err != nil || rep.NewDamaged != 1 {
		t.Fatalf("scrub: %v %+v, want one damaged block", err, rep)
	}
	e = reopen(t, dir, e, Options{})
	frep, err := e.Fsck(false)
	if err != nil || frep.DamagedBlocks != 1 || frep.BadData+frep.KnownDamaged != 1 {
		t.Fatalf("fsck: %v %+v", err, frep)
	}
}

// Two volumes that name one domain with two secrets (damage: a header
// rewritten by hand, or by a bug): the later volume is offline, the rest
// of the store serves.
func TestDomainSecretConflict(t *testing.T) {
	dir, e := newStore(t, Options{})
	a := createIn(t, e, "a", "t1", 1<<20)
	b := createIn(t, e, "b", "t1", 1<<20)
	writeBlocks(t, a, 0, image(4))
	writeBlocks(t, b, 0, image(4))
	e.Flush()
	path := b.m.path
	h := b.m.hdr
	e.Close()
	h.Secret[0] ^= 1
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	enc := h.encode()
	f.WriteAt(enc, 0)
	f.WriteAt(enc, mapHeaderSize)
	f.Close()
	e = openOK(t, dir)
	if _, err := e.Device("b"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("b: %v, want offline (corrupt)", err)
	}
	a2, err := e.Device("a")
	if err != nil || !bytes.Equal(mustRead(t, a2, 0, 4*BlockSize), image(4)) {
		t.Fatalf("a: %v", err)
	}
	if len(e.Broken()) != 1 || filepath.Base(e.Broken()[0].Path) != filepath.Base(path) {
		t.Fatalf("broken: %+v", e.Broken())
	}
}

// The cost of keying a block in a domain (HMAC-SHA-256) against the
// default domain's SHA-256 (make bench reports both).
func BenchmarkDomainKey(b *testing.B) {
	data := block(7)
	for _, kr := range []*keyer{defaultKeyer(SHA256), domainKeyer("t", [SecretSize]byte{9})} {
		name := "default"
		if kr.domain != "" {
			name = "domain"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(BlockSize)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					kr.blockKey(data)
				}
			})
		})
	}
}

// BenchmarkDomainSideChannel times one 4 KiB write, as a guest probing
// another's data would: of a block its own domain holds (a duplicate:
// no data write), of a block only another domain holds, and of a new
// block. Without domains the second is as fast as the first, which is
// the side channel; with them it costs what the third does.
func BenchmarkDomainSideChannel(b *testing.B) {
	for _, tc := range []struct {
		name   string
		domain string // of the writing device; the blocks are tenant-a's
		held   bool   // the blocks are stored already (by tenant-a)
	}{
		{"own-domain-duplicate", "tenant-a", true},
		{"other-domain-duplicate", "tenant-b", true},
		{"new-block", "tenant-b", false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchStore(b)
			defer e.Close()
			size := int64(b.N) * BlockSize
			src, err := e.CreateDevice("src", size, CreateOptions{Domain: "tenant-a"})
			if err != nil {
				b.Fatal(err)
			}
			dst, err := e.CreateDevice("dst", size, CreateOptions{Domain: tc.domain})
			if err != nil {
				b.Fatal(err)
			}
			blk := func(i int) []byte {
				p := block(uint64(i))
				binary.LittleEndian.PutUint64(p, uint64(i)+1)
				return p
			}
			if tc.held {
				for i := range b.N {
					if _, err := src.WriteAt(blk(i), int64(i)*BlockSize); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.Flush(); err != nil {
					b.Fatal(err)
				}
			}
			data := make([][]byte, b.N)
			for i := range data {
				data[i] = blk(i)
			}
			b.SetBytes(BlockSize)
			b.ResetTimer()
			for i := range b.N {
				if _, err := dst.WriteAt(data[i], int64(i)*BlockSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Devices made at once in the same new domains get one secret per
// domain: their writes share.
func TestDomainConcurrentCreate(t *testing.T) {
	_, e := newStore(t, Options{})
	img := image(8)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			d, err := e.CreateDevice(fmt.Sprintf("d%d", i), 1<<20, CreateOptions{Domain: fmt.Sprintf("t%d", i%2)})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := d.WriteAt(img, 0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	e.Flush()
	s, err := e.Stats()
	if err != nil || s.UniqueBlocks != 16 || len(s.Domains) != 2 {
		t.Fatalf("stored %d blocks in %d domains (%v), want 16 in 2", s.UniqueBlocks, len(s.Domains), err)
	}
	fsckOK(t, e)
}
