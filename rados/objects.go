//go:build rados

package rados

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Object operations for the metadata of layers above (package pool: the
// store header, device headers, map shards). They keep librados' types
// and errno values inside this package.

// CreateObject creates oid holding data; an existing object is ErrExists
// and is left as it was.
func (c *Conn) CreateObject(oid string, data []byte) error {
	op := rados.CreateWriteOp()
	defer op.Release()
	op.Create(rados.CreateExclusive)
	op.WriteFull(data)
	if err := op.Operate(c.io, oid, rados.OperationNoFlag); err != nil {
		if errnoOf(err) == -errEEXIST {
			return fmt.Errorf("%w: %s", ErrExists, oid)
		}
		return c.wrap("create "+oid, err)
	}
	return nil
}

// ErrNoObject means an object that should exist does not.
var ErrNoObject = errors.New("rados: no such object")

// Read reads a whole object; a missing one is ErrNoObject.
func (c *Conn) Read(oid string) ([]byte, error) {
	b, err := c.ReadAll(oid)
	if errnoOf(err) == -errENOENT {
		return nil, fmt.Errorf("%w: %s", ErrNoObject, oid)
	}
	return b, err
}

// OmapAll reads every omap entry of oid whose key starts with prefix; a
// missing object has none.
func (c *Conn) OmapAll(oid, prefix string) (map[string][]byte, error) {
	m, err := c.io.GetAllOmapValues(oid, "", prefix, 1000)
	if err != nil {
		if errnoOf(err) == -errENOENT {
			return map[string][]byte{}, nil
		}
		return nil, c.wrap("read omap of "+oid, err)
	}
	return m, nil
}

// OmapGet reads the named omap entries of oid (missing ones are absent
// from the result, as is everything of a missing object).
func (c *Conn) OmapGet(oid string, keys []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	op := rados.CreateReadOp()
	defer op.Release()
	step := op.GetOmapValuesByKeys(keys)
	if err := op.Operate(c.io, oid, rados.OperationNoFlag); err != nil {
		if errnoOf(err) == -errENOENT {
			return out, nil
		}
		return nil, c.wrap("read omap of "+oid, err)
	}
	for {
		kv, err := step.Next()
		if err != nil {
			return nil, c.wrap("read omap of "+oid, err)
		}
		if kv == nil {
			return out, nil
		}
		out[kv.Key] = append([]byte(nil), kv.Value...)
	}
}

// SetOmap sets omap entries of oid (created if missing), unconditionally:
// for state only its owner writes (the host registry's own entry).
func (c *Conn) SetOmap(oid string, set map[string][]byte) error {
	op := rados.CreateWriteOp()
	defer op.Release()
	op.Create(rados.CreateIdempotent)
	op.SetOmap(set)
	if err := op.Operate(c.io, oid, rados.OperationNoFlag); err != nil {
		return c.wrap("set omap of "+oid, err)
	}
	return nil
}

// Objects lists the objects of the namespace whose names start with
// prefix.
func (c *Conn) Objects(prefix string) ([]string, error) {
	var out []string
	err := c.io.ListObjects(func(oid string) {
		if strings.HasPrefix(oid, prefix) {
			out = append(out, oid)
		}
	})
	if err != nil {
		return nil, c.wrap("list objects", err)
	}
	return out, nil
}

// InstanceID is this client's global id, the number in a holder's
// "client.N".
func (c *Conn) InstanceID() uint64 { return c.conn.GetInstanceID() }

// OmapUpdate sets and removes omap entries of the lease's object in one
// op that also asserts the lease: all of it lands, or none and
// ErrNotHeld (or ErrFenced for a blocklisted client).
func (l *Lease) OmapUpdate(set map[string][]byte, rm []string) error {
	op := rados.CreateWriteOp()
	defer op.Release()
	l.Assert(op)
	if len(rm) > 0 {
		op.RmOmapKeys(rm)
	}
	if len(set) > 0 {
		op.SetOmap(set)
	}
	err := op.Operate(l.c.io, l.oid, rados.OperationNoFlag)
	switch e := errnoOf(err); {
	case err == nil:
		return nil
	case e == -errEBUSY || e == -errENOENT:
		return fmt.Errorf("%w: update of %s: %w", ErrNotHeld, l.oid, err)
	default:
		return l.c.wrap("update of "+l.oid, err)
	}
}

// Break breaks the lock of holder h without blocklisting it (its client
// is already fenced by a Fence on another of its leases, or it let go),
// then acquires.
func (l *Lease) Break(h Holder) error {
	ret, err := l.c.io.BreakLock(l.oid, leaseName, h.Client, h.Cookie)
	switch {
	case err != nil:
		return l.c.wrap("break lease of "+l.oid, err)
	case ret != 0 && ret != -errENOENT:
		return fmt.Errorf("rados: break lease of %s held by %s: error %d", l.oid, h.Client, ret)
	}
	return l.Acquire()
}

// Take outcomes.
const (
	TookFree     = "free"      // nobody held it
	TookHandover = "hand-over" // the holder released it on request
	TookFence    = "fence"     // the holder had no watch (dead or cut off): blocklisted, broken
)

// ErrNotAnswering means the lease's holder still watches the object but
// did not answer a hand-over request in time: alive but stuck, or dead
// so recently that its watch has not expired. Trying again after its
// watch timeout either gets an answer or finds no watch (and fences).
var ErrNotAnswering = errors.New("rados: the lease's holder did not answer")

// Take acquires the lease whoever holds it: free, it is taken; held, the
// holder is asked to hand it over (RequestHandover's notify, answered by
// its ServeHandover); a holder with no watch on the object is dead or
// cut off (its watch expired), and is fenced (Fence). A holder that
// watches but does not answer within timeout is ErrNotAnswering.
func (l *Lease) Take(timeout time.Duration) (string, error) {
	err := l.Acquire()
	if !errors.Is(err, ErrLeaseHeld) {
		return TookFree, err
	}
	hs, err := l.Holders()
	if err != nil {
		return "", err
	}
	if len(hs) == 0 {
		return TookFree, l.Acquire()
	}
	h := hs[0]
	gid, _ := strconv.ParseUint(strings.TrimPrefix(h.Client, "client."), 10, 64)
	acks, timeouts, err := l.c.io.NotifyWithTimeout(l.oid, []byte(handoverRequest), timeout)
	if err != nil && errnoOf(err) != -errETIMEDOUT {
		return "", l.c.wrap("hand-over request on "+l.oid, err)
	}
	for _, a := range acks {
		if uint64(a.NotifierID) != gid {
			continue
		}
		if r := string(a.Response); r != "released" && r != "ignored" {
			return "", fmt.Errorf("%w: %s: the holder answered %q", ErrLeaseHeld, l.oid, r)
		}
		return TookHandover, l.Acquire()
	}
	for _, t := range timeouts {
		if uint64(t.NotifierID) == gid {
			return "", fmt.Errorf("%w: %s held by %s (%s) for %v", ErrNotAnswering, l.oid, h.Client, h.Cookie, timeout)
		}
	}
	// No watch of the holder's: it is gone, or cut off past its watch
	// timeout. It may still come back: fence it first.
	return TookFence, l.Fence(h)
}

// Requests serves a held lease's requests: it watches the lease's
// object and answers each notify with handle's reply (Take takes
// "released" as the holder having let go; the handler releases the
// lease itself). Stop the returned Handover to end it.
func (l *Lease) Requests(handle func() string) (*Handover, error) {
	w, err := l.c.watchObject(l.oid, l.c.cfg.WatchTimeout, func(ev rados.NotifyEvent) string {
		if string(ev.Data) == handoverRequest && uint64(ev.NotifierID) != l.c.InstanceID() {
			return handle()
		}
		return "ignored"
	})
	if err != nil {
		return nil, err
	}
	return &Handover{w}, nil
}

// ReadBlocks reads len(p) bytes (whole blocks) from l on: blocks l,
// l+1, ... of one pack.
func (c *Conn) ReadBlocks(l Loc, p []byte) error {
	if len(p) == 0 || len(p)%BlockSize != 0 || l.Block()+len(p)/BlockSize > PackBlocks {
		return fmt.Errorf("%w: read of %d bytes at %v", ErrArg, len(p), l)
	}
	n, err := c.io.Read(l.Pack().Object(), p, l.Offset())
	if err != nil {
		return c.wrap("read "+l.String(), err)
	}
	if n != len(p) {
		return fmt.Errorf("%w: %v: %d of %d bytes", ErrNoObject, l, n, len(p))
	}
	return nil
}

// Lease returns the handle's object name.
func (l *Lease) Object() string { return l.oid }
