package pool

import (
	"sync"

	"blockhash/blockstore"
)

// blockPutter is where batches go: rados.Blocks (a host's packs).
type blockPutter interface {
	Put(tags [][blockstore.TagSize]byte, data []byte) ([]blockstore.Loc, error)
}

// maxBatchBlocks bounds the blocks of one pack append (one RADOS op).
const maxBatchBlocks = 256

// putBatcher coalesces the block puts of concurrent writers into one pack
// append (one RADOS op) per batch: while one append is in flight, the
// puts that arrive queue, and the next append takes them all (group
// commit). A host's packs have one writer anyway (rados.Blocks), so
// without it each 4 KiB guest write would wait for its own op behind
// every other.
//
// mu guards queue and busy; no lock is held across the append.
type putBatcher struct {
	blocks blockPutter
	mu     sync.Mutex
	queue  []*putReq
	busy   bool
}

type putReq struct {
	tags [][blockstore.TagSize]byte
	data []byte
	locs []uint64
	err  error
	done chan struct{}
}

// put stores the blocks (data holds len(tags) blocks) and returns their
// locations, durable when it returns.
func (b *putBatcher) put(tags [][blockstore.TagSize]byte, data []byte) ([]uint64, error) {
	r := &putReq{tags: tags, data: data, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	if b.busy {
		b.mu.Unlock()
		<-r.done // a running leader appends it
		return r.locs, r.err
	}
	b.busy = true
	b.mu.Unlock()
	// This caller leads: it appends batches until the queue is empty.
	for {
		b.mu.Lock()
		var batch []*putReq
		n := 0
		for len(b.queue) > 0 && (n == 0 || n+len(b.queue[0].tags) <= maxBatchBlocks) {
			n += len(b.queue[0].tags)
			batch = append(batch, b.queue[0])
			b.queue = b.queue[1:]
		}
		if len(batch) == 0 {
			b.busy = false
			b.mu.Unlock()
			break
		}
		b.mu.Unlock()
		b.append(batch, n)
	}
	<-r.done
	return r.locs, r.err
}

// append writes one batch in one op and answers its requests.
func (b *putBatcher) append(batch []*putReq, n int) {
	tags := make([][blockstore.TagSize]byte, 0, n)
	data := make([]byte, 0, n*BlockSize)
	for _, r := range batch {
		tags = append(tags, r.tags...)
		data = append(data, r.data...)
	}
	locs, err := b.blocks.Put(tags, data)
	i := 0
	for _, r := range batch {
		if err != nil {
			r.err = err
		} else {
			r.locs = make([]uint64, len(r.tags))
			for j := range r.tags {
				r.locs[j] = uint64(locs[i])
				i++
			}
		}
		close(r.done)
	}
}
