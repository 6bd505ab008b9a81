//go:build rados

package rados

import "github.com/ceph/go-ceph/rados"

// watchLoop answers the notifies of one watch (a lease's hand-over
// requests, GC rounds) until the watch ends or Stop. go-ceph sends a
// watch's events and errors on unbuffered channels from librados'
// callback thread, which waits until someone takes them, and closes
// them only when the unwatch succeeds: so the loop takes the errors too
// (a lost watch shows at the next op), and Stop ends it even when the
// unwatch is refused (this client blocklisted), draining for good what
// librados may still send (else its shutdown waits on that callback).
type watchLoop struct {
	w    *rados.Watcher
	stop chan struct{}
	done chan struct{}
}

func newWatchLoop(w *rados.Watcher) watchLoop {
	return watchLoop{w: w, stop: make(chan struct{}), done: make(chan struct{})}
}

// serve acknowledges each notify with reply's answer.
func (l watchLoop) serve(reply func(ev rados.NotifyEvent) string) {
	defer close(l.done)
	for {
		select {
		case ev, ok := <-l.w.Events():
			if !ok {
				return
			}
			_ = ev.Ack([]byte(reply(ev)))
		case _, ok := <-l.w.Errors():
			if !ok {
				return
			}
		case <-l.stop:
			return
		}
	}
}

// Stop ends the watch and waits for the answer in progress, if any.
func (l watchLoop) Stop() error {
	err := l.w.Delete()
	close(l.stop)
	<-l.done
	if err != nil {
		go func() {
			for {
				select {
				case <-l.w.Events():
				case <-l.w.Errors():
				}
			}
		}()
	}
	return err
}
