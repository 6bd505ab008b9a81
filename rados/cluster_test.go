//go:build rados

package rados

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var nsSeq atomic.Int64

// testNamespace is a RADOS namespace no other test or run uses.
func testNamespace(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return fmt.Sprintf("%s-%d-%d", name, time.Now().UnixNano(), nsSeq.Add(1))
}

// testConn connects to the test cluster (BLOCKHASH_CEPH_CONF) in
// namespace ns, as a host of its own (a new client instance). Without the
// variable the test skips; with it, an unreachable cluster fails the test.
func testConn(t testing.TB, ns string, timeout time.Duration) *Conn {
	t.Helper()
	conf := os.Getenv("BLOCKHASH_CEPH_CONF")
	if conf == "" {
		t.Skip("no Ceph cluster: set BLOCKHASH_CEPH_CONF to a ceph.conf (make rados starts a one-node cluster and sets it)")
	}
	pool := os.Getenv("BLOCKHASH_CEPH_POOL")
	if pool == "" {
		pool = "bh"
	}
	c, err := Connect(Config{ConfFile: conf, Pool: pool, Namespace: ns, Timeout: timeout})
	if err != nil {
		t.Fatalf("BLOCKHASH_CEPH_CONF=%s: %v", conf, err)
	}
	t.Cleanup(c.Close)
	return c
}

// testKey is a content key made from n (the engine's shape: a SHA-256 and
// four more bytes).
func testKey(n int) []byte {
	s := sha256.Sum256(fmt.Appendf(nil, "block %d", n))
	return append(s[:], byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
}

// randBlocks returns n random 4 KiB blocks back to back.
func randBlocks(n int) []byte {
	b := make([]byte, n*BlockSize)
	_, _ = rand.Read(b)
	return b
}
