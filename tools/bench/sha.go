package bench

import (
	"crypto/sha256"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"blockhash/blockstore"
)

// sha256Rate hashes distinct 4 KiB blocks with SHA-256 (the store's default
// strong hash, crypto/sha256 as the engine calls it) on one goroutine per
// core for d and returns MB/s (10^6 bytes) over all cores: the most any
// ingest of unique data can reach on this machine.
func sha256Rate(d time.Duration) float64 {
	var blocks atomic.Int64
	var sink atomic.Uint32
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for g := range runtime.NumCPU() {
		wg.Go(func() {
			b := newStamper(uint32(g)).base
			var n int64
			var x byte
			for ; time.Now().Before(deadline); n++ {
				b[0]++ // a new block each time
				s := sha256.Sum256(b)
				x ^= s[0]
			}
			blocks.Add(n)
			sink.Add(uint32(x))
		})
	}
	wg.Wait()
	return float64(blocks.Load()*blockstore.BlockSize) / time.Since(start).Seconds() / 1e6
}
