//go:build rados

package rados

import (
	"crypto/rand"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Figures of the primitives on the test cluster (make rados-bench); they
// are reported, never asserted.

func benchKeys(n int) [][]byte {
	ks := make([][]byte, n)
	for i := range ks {
		ks[i] = make([]byte, KeySize)
		_, _ = rand.Read(ks[i])
	}
	return ks
}

// appendPacks appends n batches of batch blocks through one writer,
// opening a new pack when one is full. The packs are deleted when the
// benchmark ends (the test cluster keeps objects in RAM).
func appendPacks(b *testing.B, c *Conn, host uint16, n, batch int) {
	var made []PackID
	b.Cleanup(func() {
		for _, id := range made {
			if err := c.DeletePack(id); err != nil {
				b.Error(err)
			}
		}
	})
	data := randBlocks(batch)
	keys := benchKeys(batch)
	var p *PackWriter
	var seq uint64
	for range n {
		if p == nil || p.Free() < batch {
			if p != nil {
				if err := p.Seal(); err != nil {
					b.Error(err)
					return
				}
			}
			var err error
			if p, err = c.NewPack(host, seq); err != nil {
				b.Error(err)
				return
			}
			seq = p.ID().Seq + 1
			made = append(made, p.ID())
		}
		if _, err := p.Append(keys, data); err != nil {
			b.Error(err)
			return
		}
	}
}

// One host's writer, batches of 256 blocks (1 MiB), one op each.
func BenchmarkPackAppend(b *testing.B) {
	c := testConn(b, testNamespace(b), 30*time.Second)
	b.SetBytes(256 * BlockSize)
	b.ResetTimer()
	appendPacks(b, c, 1, b.N, 256)
}

// Four writers (hosts, or one host's writers) at once.
func BenchmarkPackAppendParallel4(b *testing.B) {
	c := testConn(b, testNamespace(b), 30*time.Second)
	b.SetBytes(256 * BlockSize)
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range 4 {
		n := b.N / 4
		if w < b.N%4 {
			n++
		}
		wg.Go(func() { appendPacks(b, c, uint16(w+1), n, 256) })
	}
	wg.Wait()
}

// 1,000 new keys per call, as a flush of 4 MiB of new blocks inserts.
func BenchmarkIndexPutIfAbsent(b *testing.B) {
	for _, shards := range []uint32{64, 4096} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			c := testConn(b, testNamespace(b), 30*time.Second)
			x, err := c.NewIndex(shards)
			if err != nil {
				b.Fatal(err)
			}
			const n = 1000
			locs := make([]Loc, n)
			for i := range locs {
				locs[i], _ = MakeLoc(PackID{1, uint64(i / PackBlocks)}, i%PackBlocks)
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				keys := benchKeys(n)
				b.StartTimer()
				if _, _, err := x.PutIfAbsent(keys, locs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// 1,000 keys looked up per call (half present).
func BenchmarkIndexLookup(b *testing.B) {
	c := testConn(b, testNamespace(b), 30*time.Second)
	x, err := c.NewIndex(64)
	if err != nil {
		b.Fatal(err)
	}
	const n = 1000
	keys := benchKeys(n)
	locs := make([]Loc, n/2)
	for i := range locs {
		locs[i], _ = MakeLoc(PackID{1, 1}, i)
	}
	if _, _, err := x.PutIfAbsent(keys[:n/2], locs); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := x.Lookup(keys); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "keys/s")
}

func BenchmarkLeaseAcquireRelease(b *testing.B) {
	c := testConn(b, testNamespace(b), 30*time.Second)
	if err := c.io.WriteFull("bh.dev.bench", []byte("h")); err != nil {
		b.Fatal(err)
	}
	l := c.Lease("bh.dev.bench", "host-1")
	b.ResetTimer()
	for range b.N {
		if err := l.Acquire(); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(); err != nil {
			b.Fatal(err)
		}
	}
}

// A device handed back and forth between two hosts that both serve
// hand-over requests; one op is one hand-over.
func BenchmarkLeaseHandover(b *testing.B) {
	ns := testNamespace(b)
	a, c := testConn(b, ns, 30*time.Second), testConn(b, ns, 30*time.Second)
	if err := a.io.WriteFull("bh.dev.bench", []byte("h")); err != nil {
		b.Fatal(err)
	}
	ls := []*Lease{a.Lease("bh.dev.bench", "host-1"), c.Lease("bh.dev.bench", "host-2")}
	if err := ls[0].Acquire(); err != nil {
		b.Fatal(err)
	}
	for _, l := range ls {
		h, err := l.ServeHandover(func() error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		defer h.Stop()
	}
	b.ResetTimer()
	for i := range b.N {
		if err := ls[(i+1)%2].RequestHandover(10 * time.Second); err != nil {
			b.Fatal(err)
		}
	}
}

// Taking a device from a host that does not answer: blocklist, wait for
// the OSD map, break, acquire. One op is one fence.
func BenchmarkLeaseFence(b *testing.B) {
	ns := testNamespace(b)
	c := testConn(b, ns, 30*time.Second)
	if err := c.io.WriteFull("bh.dev.bench", []byte("h")); err != nil {
		b.Fatal(err)
	}
	taker := c.Lease("bh.dev.bench", "host-2")
	for range b.N {
		b.StopTimer()
		if err := taker.Release(); err != nil && b.N > 0 && !isNotHeld(err) {
			b.Fatal(err)
		}
		dead := testConn(b, ns, 5*time.Second)
		if err := dead.Lease("bh.dev.bench", "host-1").Acquire(); err != nil {
			b.Fatal(err)
		}
		hs, err := taker.Holders()
		if err != nil || len(hs) != 1 {
			b.Fatal(hs, err)
		}
		b.StartTimer()
		if err := taker.Fence(hs[0]); err != nil {
			b.Fatal(err)
		}
	}
}
