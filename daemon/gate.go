package daemon

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// gate holds a served device's I/O for a migration's switch-over. Open,
// it costs a request two atomic adds and one atomic load: enter counts
// the request in flight, then looks at the gate; exit counts it out.
// Paused (pause), a request that enters backs off (counts itself out) and
// waits until resume lets it go on, or until close makes it fail with
// ErrReleased (the paused device is being released: del). pause returns once
// every request that was already inside the store has left it, and the
// store has been flushed, so the device's content is then final until
// resume.
//
// Why this order is safe: a request increments inflight before it loads
// the pause; pause stores the pause before it loads inflight. With Go's
// sequentially consistent atomics either the request sees the pause (and
// backs off), or pause sees it counted (and waits for its exit). The exit
// that brings inflight to zero loads the pause after its decrement, so a
// pause that saw the request counted is woken by it.
type gate struct {
	inflight atomic.Int64
	// cur is nil while the gate is open; else the pause requests wait on.
	cur atomic.Pointer[pause]

	// mu guards the changes of cur (pause, resume, close) and shut; it
	// is never held while waiting for requests or flushing.
	mu   sync.Mutex
	shut bool // closed: pause and resume fail; if it was paused, every request does
}

// pause is one period during which a gate holds its requests.
type pause struct {
	// release is closed when the held requests may go on (resume) or must
	// fail (failed, set before the close).
	release chan struct{}
	failed  bool
	// drained gets a token from an exit that brought inflight to zero
	// while this pause was current (capacity 1: never blocks the exit).
	drained chan struct{}
}

func newPause() *pause {
	return &pause{release: make(chan struct{}), drained: make(chan struct{}, 1)}
}

// enter admits one request: at once while the gate is open, else when the
// pause ends. It fails with ErrReleased when a paused gate was closed. A request
// admitted must call exit when it leaves the store.
func (g *gate) enter() error {
	for {
		g.inflight.Add(1)
		p := g.cur.Load()
		if p == nil {
			return nil
		}
		g.exit() // back off: pause must not wait for a request it holds
		<-p.release
		if p.failed {
			return ErrReleased
		}
	}
}

// exit counts an admitted request out, and wakes a pause waiting for the
// requests in the store when it was the last.
func (g *gate) exit() {
	if g.inflight.Add(-1) != 0 {
		return
	}
	if p := g.cur.Load(); p != nil {
		select {
		case p.drained <- struct{}{}:
		default:
		}
	}
}

// pause holds new requests, waits until the requests inside the store
// have left it, then calls flush. On success the gate stays paused until
// resume or close. If ctx ends first, or flush fails, a pause this call
// began is undone (requests go on) and the error returned; a resume or
// close meanwhile ends it with an error too. Pausing a paused gate waits
// and flushes again, and leaves it paused whatever happens.
func (g *gate) pause(ctx context.Context, flush func() error) error {
	g.mu.Lock()
	if g.shut {
		g.mu.Unlock()
		return ErrReleased
	}
	p := g.cur.Load()
	began := p == nil
	if began {
		p = newPause()
		g.cur.Store(p)
	}
	g.mu.Unlock()
	for g.inflight.Load() != 0 {
		select {
		case <-p.drained: // look again: a request that backed off leaves a token too
		case <-p.release:
			if p.failed {
				return ErrReleased
			}
			return fmt.Errorf("%w: resumed before its requests drained", ErrPauseEnded)
		case <-ctx.Done():
			if began {
				g.end(p)
			}
			return fmt.Errorf("%w: requests still in the store: %w", ErrPauseEnded, ctx.Err())
		}
	}
	if err := flush(); err != nil {
		if began {
			g.end(p)
		}
		return err
	}
	return nil
}

// resume lets held requests go on; an open gate is left as it is. It
// fails with ErrReleased when the gate is closed.
func (g *gate) resume() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return ErrReleased
	}
	if p := g.cur.Load(); p != nil {
		g.cur.Store(nil) // before the close: a request let go must find the gate open
		close(p.release)
	}
	return nil
}

// end undoes pause p if it is still current (resume of one's own pause).
func (g *gate) end(p *pause) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.shut && g.cur.Load() == p {
		g.cur.Store(nil)
		close(p.release)
	}
}

// close shuts the gate for good: the device is going away (del). If it
// is paused, the held requests and every later one fail with ErrReleased
// (the device's content was final: nothing reaches the store any more);
// requests already in the store finish. If it is open it stays open, so
// the stop drains the requests as before. Either way pause and resume
// fail from now on, so no pause can hold up the stop.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return
	}
	g.shut = true
	old := g.cur.Load()
	if old == nil {
		return
	}
	dead := &pause{release: make(chan struct{}), failed: true, drained: make(chan struct{}, 1)}
	close(dead.release)
	g.cur.Store(dead)
	old.failed = true // written before the close that publishes it
	close(old.release)
}

// paused tells whether requests are being held.
func (g *gate) paused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.shut && g.cur.Load() != nil
}
