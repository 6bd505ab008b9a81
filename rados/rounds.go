//go:build rados

package rados

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// gcObject holds the garbage collector's rounds (design.md section 5):
// omap "round" -> the current round (8 bytes, big endian; absent: none
// yet) and "ack.<host>" -> the last round that host acknowledged.
const gcObject = "bh.gc"

const roundKey = "round"

func ackKey(host uint16) string { return "ack." + strconv.Itoa(int(host)) }

func encodeRound(r uint64) []byte {
	if r == 0 {
		return nil // no round yet: the key is absent, cmp_vals' default is ""
	}
	return binary.BigEndian.AppendUint64(nil, r)
}

// Round returns the current GC round (0: none begun).
func (c *Conn) Round() (uint64, error) {
	kv, err := c.io.GetOmapValues(gcObject, "", roundKey, 1)
	if err != nil {
		if errnoOf(err) == -errENOENT {
			return 0, nil
		}
		return 0, c.wrap("read "+gcObject, err)
	}
	v, ok := kv[roundKey]
	if !ok {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s: round of %d bytes", ErrBadValue, gcObject, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// BeginRound moves the GC round from prev to prev+1 (a compare-and-set:
// another leader's bump first is ErrRaced), then notifies every host
// serving rounds and waits for their answers, up to timeout. It returns
// the new round; Unacked then names the hosts that did not acknowledge it.
func (c *Conn) BeginRound(prev uint64, timeout time.Duration) (uint64, error) {
	next := prev + 1
	op := rados.CreateWriteOp()
	op.Create(rados.CreateIdempotent)
	op.Exec("cmpomap", "cmp_vals", encodeCmpOmap(cmpModeString, cmpOpEQ,
		map[string][]byte{roundKey: encodeRound(prev)}, withDefault, nil))
	op.SetOmap(map[string][]byte{roundKey: encodeRound(next)})
	err := op.Operate(c.io, gcObject, rados.OperationNoFlag)
	op.Release()
	if errnoOf(err) == -errECANCELED {
		return 0, fmt.Errorf("%w: GC round is no longer %d", ErrRaced, prev)
	}
	if err != nil {
		return 0, c.wrap("begin GC round", err)
	}
	if _, _, err := c.io.NotifyWithTimeout(gcObject, encodeRound(next), timeout); err != nil && errnoOf(err) != -errETIMEDOUT {
		return next, c.wrap("notify GC round", err)
	}
	return next, nil
}

// AckRound records that host acknowledged round r: everything it holds
// or may still name was published before (the caller's part).
func (c *Conn) AckRound(host uint16, r uint64) error {
	if err := c.io.SetOmap(gcObject, map[string][]byte{ackKey(host): encodeRound(r)}); err != nil {
		return c.wrap("acknowledge GC round", err)
	}
	return nil
}

// Unacked returns the hosts among hosts whose last acknowledged round is
// below r, in order.
func (c *Conn) Unacked(r uint64, hosts []uint16) ([]uint16, error) {
	kv, err := c.io.GetAllOmapValues(gcObject, "", "ack.", 1024)
	if err != nil && errnoOf(err) != -errENOENT {
		return nil, c.wrap("read "+gcObject, err)
	}
	var out []uint16
	for _, h := range hosts {
		v := kv[ackKey(h)]
		if len(v) != 8 || binary.BigEndian.Uint64(v) < r {
			out = append(out, h)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// RoundServer answers GC rounds for one host (ServeRounds).
type RoundServer struct{ *watch }

// ServeRounds watches the GC object; for each round begun it calls
// prepare(round) (the host publishes its references and pins), and only
// if that succeeds acknowledges the round, then answers the notify.
func (c *Conn) ServeRounds(host uint16, prepare func(round uint64) error) (*RoundServer, error) {
	if err := c.io.Create(gcObject, rados.CreateIdempotent); err != nil {
		return nil, c.wrap("create "+gcObject, err)
	}
	w, err := c.watchObject(gcObject, c.cfg.WatchTimeout, func(ev rados.NotifyEvent) string {
		if len(ev.Data) != 8 {
			return "ignored"
		}
		if r := binary.BigEndian.Uint64(ev.Data); r > 0 {
			if err := prepare(r); err != nil {
				return "failed: " + err.Error()
			}
			if err := c.AckRound(host, r); err != nil {
				return "failed: " + err.Error()
			}
		}
		return "acked"
	})
	if err != nil {
		return nil, err
	}
	return &RoundServer{w}, nil
}
