//go:build rados

package rados

import (
	"errors"
	"fmt"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// leaseName is the cls_lock lock name of a lease.
const leaseName = "lease"

// Lease is one holder's handle on the lease of an object (a device's
// header, its journal): a cls_lock exclusive lock with no duration, so it
// never expires by time. It is held until released, or broken by Fence
// after its holder was blocklisted. Its methods may be called from any
// goroutine but not concurrently with each other (ServeHandover's
// goroutine calls Release: stop it before using the lease otherwise).
type Lease struct {
	c      *Conn
	oid    string
	cookie string
}

// Holder is a lease's holder as the OSD records it.
type Holder struct {
	Client string // client entity, e.g. "client.4123"
	Cookie string // the holder's cookie (its host id)
	Addr   string // its instance address, what Blocklist takes
}

// Lease returns a handle on oid's lease with cookie (the host's id).
func (c *Conn) Lease(oid, cookie string) *Lease { return &Lease{c: c, oid: oid, cookie: cookie} }

// Acquire takes the lease; holding it already is success. Another holder
// is ErrLeaseHeld (naming it).
func (l *Lease) Acquire() error {
	ret, err := l.c.io.LockExclusive(l.oid, leaseName, l.cookie, "blockhash lease", 0, nil)
	switch {
	case err != nil:
		return l.c.wrap("lease "+l.oid, err)
	case ret == 0 || ret == -errEEXIST:
		return nil
	case ret == -errEBUSY:
		hs, _ := l.Holders()
		return fmt.Errorf("%w: %s held by %v", ErrLeaseHeld, l.oid, hs)
	default:
		return fmt.Errorf("rados: lease %s: error %d", l.oid, ret)
	}
}

// Release gives the lease up. Not holding it is ErrNotHeld.
func (l *Lease) Release() error {
	ret, err := l.c.io.Unlock(l.oid, leaseName, l.cookie)
	switch {
	case err != nil:
		return l.c.wrap("release "+l.oid, err)
	case ret == 0:
		return nil
	case ret == -errENOENT:
		return fmt.Errorf("%w: %s", ErrNotHeld, l.oid)
	default:
		return fmt.Errorf("rados: release %s: error %d", l.oid, ret)
	}
}

// holders lists who holds oid's lease.
func (c *Conn) holders(oid string) ([]Holder, error) {
	info, err := c.io.ListLockers(oid, leaseName)
	if err != nil {
		if errnoOf(err) == -errENOENT {
			return nil, nil
		}
		return nil, c.wrap("lockers of "+oid, err)
	}
	hs := make([]Holder, 0, len(info.Clients))
	for i := range info.Clients {
		hs = append(hs, Holder{Client: info.Clients[i], Cookie: info.Cookies[i], Addr: info.Addrs[i]})
	}
	return hs, nil
}

// Holders lists who holds the lease (none or one).
func (l *Lease) Holders() ([]Holder, error) { return l.c.holders(l.oid) }

// Assert adds to op a check that this handle holds the lease; op must be
// on the lease's own object. The whole op then fails (ErrNotHeld from
// Write) unless the lease is held, atomically with its writes.
func (l *Lease) Assert(op *rados.WriteOp) {
	op.Exec("lock", "assert_locked", encodeLockAssert(leaseName, lockExclusive, l.cookie, ""))
}

// Write writes data at off in the lease's object only if this handle
// holds the lease (a journal append is such a write).
func (l *Lease) Write(data []byte, off uint64) error {
	op := rados.CreateWriteOp()
	defer op.Release()
	l.Assert(op)
	op.Write(data, off)
	err := op.Operate(l.c.io, l.oid, rados.OperationNoFlag)
	switch e := errnoOf(err); {
	case err == nil:
		return nil
	case e == -errEBUSY || e == -errENOENT:
		return fmt.Errorf("%w: write to %s: %w", ErrNotHeld, l.oid, err)
	default:
		return l.c.wrap("write to "+l.oid, err)
	}
}

// Fence takes the lease from a holder that does not answer (dead, or cut
// off): it blocklists the holder's address, waits for the OSD map that
// says so, breaks its lock and acquires. From then on the old holder's
// operations are refused by every OSD.
func (l *Lease) Fence(h Holder) error {
	if err := l.c.Blocklist(h.Addr); err != nil {
		return err
	}
	ret, err := l.c.io.BreakLock(l.oid, leaseName, h.Client, h.Cookie)
	switch {
	case err != nil:
		return l.c.wrap("break lease of "+l.oid, err)
	case ret != 0 && ret != -errENOENT: // ENOENT: it was released meanwhile
		return fmt.Errorf("rados: break lease of %s held by %s: error %d", l.oid, h.Client, ret)
	}
	return l.Acquire()
}

// Handover answers hand-over requests for a held lease (see
// ServeHandover).
type Handover struct{ *watch }

// handoverRequest is the notify payload asking the holder to let go.
const handoverRequest = "release"

// ServeHandover watches the lease's object; on each hand-over request
// (RequestHandover) it calls flush (the holder makes everything durable
// and stops writing), releases the lease and acknowledges "released". If
// flush fails it acknowledges "refused: ..." and keeps the lease.
func (l *Lease) ServeHandover(flush func() error) (*Handover, error) {
	w, err := l.c.watchObject(l.oid, l.c.cfg.WatchTimeout, func(ev rados.NotifyEvent) string {
		if string(ev.Data) != handoverRequest {
			return "ignored"
		}
		if err := flush(); err != nil {
			return "refused: " + err.Error()
		}
		if err := l.Release(); err != nil && !errors.Is(err, ErrNotHeld) {
			return "refused: " + err.Error()
		}
		return "released"
	})
	if err != nil {
		return nil, err
	}
	return &Handover{w}, nil
}

// RequestHandover asks the holder to release the lease (a notify that its
// ServeHandover answers) and acquires it. With no holder it just
// acquires. A holder that does not answer within timeout is not fenced
// here: that is the caller's decision (Fence), made only for a host known
// to be dead or cut off.
func (l *Lease) RequestHandover(timeout time.Duration) error {
	if err := l.Acquire(); !errors.Is(err, ErrLeaseHeld) {
		return err
	}
	acks, timeouts, err := l.c.io.NotifyWithTimeout(l.oid, []byte(handoverRequest), timeout)
	if err != nil {
		return l.c.wrap("hand-over request on "+l.oid, err)
	}
	for _, a := range acks {
		if r := string(a.Response); r != "released" && r != "ignored" {
			return fmt.Errorf("%w: %s: the holder answered %q", ErrLeaseHeld, l.oid, r)
		}
	}
	if err := l.Acquire(); err != nil {
		return fmt.Errorf("%w (%d watcher(s) did not answer)", err, len(timeouts))
	}
	return nil
}
