//go:build rados

package rados

import (
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// watch serves the notifies of one watched object on a goroutine of its
// own: answer gives each one's acknowledgement. It also drains the
// watch's errors: go-ceph's error callback blocks until someone reads
// them, and a watch whose object was deleted reports one (the first
// version read only the events; a device deleted while watched hung its
// Stop for good).
type watch struct {
	w    *rados.Watcher
	stop chan struct{}
	done chan struct{}
	once sync.Once // Stop's work, once however often it is called
	err  error     // the unwatch's, from the first Stop
}

func (c *Conn) watchObject(oid string, timeout time.Duration, answer func(ev rados.NotifyEvent) string) (*watch, error) {
	w, err := c.io.WatchWithTimeout(oid, timeout)
	if err != nil {
		return nil, c.wrap("watch "+oid, err)
	}
	wt := &watch{w: w, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(wt.done)
		events, errs := w.Events(), w.Errors()
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					return
				}
				_ = ev.Ack([]byte(answer(ev)))
			case _, ok := <-errs:
				// The watch is broken (its object deleted, the
				// connection lost): notifies no longer reach it. A
				// requester then finds no watch of this host's.
				if !ok {
					return
				}
			case <-wt.stop:
				return
			}
		}
	}()
	return wt, nil
}

// Stop ends the watch; an error of its unwatch (its object gone) is
// returned, but the goroutine ends whatever.
func (wt *watch) Stop() error {
	wt.once.Do(func() {
		wt.err = wt.w.Delete()
		close(wt.stop)
		<-wt.done
	})
	return wt.err
}
