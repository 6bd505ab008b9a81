//go:build rados

package rados

import (
	"testing"
	"time"

	"blockhash/blockstore"
	"blockhash/blockstore/blockstest"
)

// The RADOS store passes the suite the local store passes; a reopen is a
// new client instance (a restarted host) on the same namespace.
func TestBlocksSuite(t *testing.T) {
	type opened struct {
		ns   string
		host uint16
	}
	where := map[blockstore.Blocks]opened{}
	open := func(t *testing.T, o opened) blockstore.Blocks {
		c := testConn(t, o.ns, 20*time.Second)
		b, err := c.OpenBlocks(o.host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		where[b] = o
		return b
	}
	blockstest.Run(t,
		func(t *testing.T) blockstore.Blocks { return open(t, opened{testNamespace(t), 3}) },
		func(t *testing.T, b blockstore.Blocks) blockstore.Blocks {
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, where[b])
		})
}
