//go:build rados

package pool

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"blockhash/rados"
)

var nsSeq atomic.Int64

// testConfig is the test cluster (BLOCKHASH_CEPH_CONF) in a RADOS
// namespace of the test's own; without the variable the test skips.
func testConfig(t testing.TB) rados.Config {
	t.Helper()
	conf := os.Getenv("BLOCKHASH_CEPH_CONF")
	if conf == "" {
		t.Skip("no Ceph cluster: set BLOCKHASH_CEPH_CONF to a ceph.conf (make rados starts a one-node cluster and sets it)")
	}
	pool := os.Getenv("BLOCKHASH_CEPH_POOL")
	if pool == "" {
		pool = "bh"
	}
	ns := fmt.Sprintf("%s-%d-%d", strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()), time.Now().UnixNano(), nsSeq.Add(1))
	return rados.Config{ConfFile: conf, Pool: pool, Namespace: ns, Timeout: 20 * time.Second, WatchTimeout: 3 * time.Second}
}

// testStore inits a store in a fresh namespace.
func testStore(t testing.TB) rados.Config {
	cfg := testConfig(t)
	if _, err := Init(cfg, 16); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testHost opens the store as host name (a client instance of its own).
func testHost(t testing.TB, cfg rados.Config, name string) *Pool {
	t.Helper()
	p, err := Open(Options{Config: cfg, Host: name, HandoverTimeout: 2 * time.Second, MergeEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// image returns n blocks: block i is content seed+i (distinct per seed and i).
func image(seed, n int) []byte {
	b := make([]byte, n*BlockSize)
	for i := range n {
		copy(b[i*BlockSize:], fmt.Sprintf("content %d", seed+i))
		b[i*BlockSize+BlockSize-1] = byte(i)
	}
	return b
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func readAll(t testing.TB, d *Device) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	if _, err := d.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeviceRoundTrip(t *testing.T) {
	cfg := testStore(t)
	a := testHost(t, cfg, "a")
	if err := a.Create("vm1", 8<<20); err != nil {
		t.Fatal(err)
	}
	d, err := a.Open("vm1")
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	copy(want, image(0, 512))
	copy(want[3<<20:], randBytes(1<<20))
	copy(want[5<<20:], image(0, 64)) // duplicates of the first blocks
	if _, err := d.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	// unaligned writes: a partial block at each end
	part := randBytes(10000)
	if _, err := d.WriteAt(part, 4096*700+123); err != nil {
		t.Fatal(err)
	}
	copy(want[4096*700+123:], part)
	if err := d.Discard(6<<20, 1<<20); err != nil {
		t.Fatal(err)
	}
	clear(want[6<<20 : 7<<20])
	if got := readAll(t, d); !bytes.Equal(got, want) {
		t.Fatal("read back differs before flush")
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	// another host reads the pool's copy without taking the lease
	b := testHost(t, cfg, "b")
	db, err := b.Open("vm1")
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, db); !bytes.Equal(got, want) {
		t.Fatal("another host reads different data")
	}
	if db.Held() || !d.Held() {
		t.Fatal("a read took the lease")
	}
	if _, err := a.Merge(); err != nil {
		t.Fatal(err)
	}
	r, err := a.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) > 0 {
		t.Fatalf("check: %v", r.Problems)
	}
	t.Logf("report %+v saved %.1f%%", r, r.SavedPercent())
	if r.LiveBlocks >= int(r.MappedBlocks) {
		t.Fatalf("no dedup: %d live blocks for %d mapped", r.LiveBlocks, r.MappedBlocks)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	cfg := testStore(t)
	a := testHost(t, cfg, "a")
	if err := a.Create("d", 1<<20); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		size int64
	}{{"", 4096}, {"a/b", 4096}, {".x", 4096}, {"ok", 0}, {"ok", 100}, {"ok", -4096}, {"d", 4096}} {
		if err := a.Create(c.name, c.size); err == nil {
			t.Errorf("create %q %d: no error", c.name, c.size)
		}
	}
	if _, err := Init(cfg, 16); err == nil {
		t.Error("second init: no error")
	}
	l, err := a.List()
	if err != nil || len(l) != 1 || l[0].Name != "d" || l[0].Size != 1<<20 {
		t.Fatalf("list %+v %v", l, err)
	}
	d, _ := a.Open("d")
	if _, err := d.WriteAt(make([]byte, 4096), 1<<20); err == nil {
		t.Error("write past the end: no error")
	}
	if _, err := a.Open("nope"); err == nil {
		t.Error("open of a missing device: no error")
	}
}
