//go:build rados

package rados

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestRegisterHost(t *testing.T) {
	ns := testNamespace(t)
	c := testConn(t, ns, 20*time.Second)
	for i, name := range []string{"alpha", "beta", "gamma"} {
		id, err := c.RegisterHost(name)
		if err != nil || id != uint16(i+1) {
			t.Fatalf("%s: id %d (%v), want %d", name, id, err, i+1)
		}
	}
	if id, err := c.RegisterHost("beta"); err != nil || id != 2 {
		t.Fatalf("beta again: %d %v", id, err)
	}
	if _, err := c.RegisterHost(""); !errors.Is(err, ErrArg) {
		t.Fatalf("empty name: %v", err)
	}
}

// Hosts registering at once from two clients: distinct ids, one per name.
func TestRegisterHostConcurrent(t *testing.T) {
	ns := testNamespace(t)
	conns := []*Conn{testConn(t, ns, 20*time.Second), testConn(t, ns, 20*time.Second)}
	const names = 12
	ids := make([][names]uint16, 2)
	var wg sync.WaitGroup
	for ci, c := range conns {
		for n := range names {
			wg.Go(func() {
				id, err := c.RegisterHost(fmt.Sprintf("host-%d", n))
				if err != nil {
					t.Error(err)
				}
				ids[ci][n] = id
			})
		}
	}
	wg.Wait()
	seen := map[uint16]int{}
	for n := range names {
		if ids[0][n] != ids[1][n] || ids[0][n] == 0 {
			t.Fatalf("host-%d got ids %d and %d", n, ids[0][n], ids[1][n])
		}
		if m, ok := seen[ids[0][n]]; ok {
			t.Fatalf("host-%d and host-%d share id %d", n, m, ids[0][n])
		}
		seen[ids[0][n]] = n
	}
}

// A GC round begins by compare-and-set, every serving host prepares and
// then acknowledges it, and a host that does not (stopped, or failing to
// prepare) is named by Unacked.
func TestRounds(t *testing.T) {
	ns := testNamespace(t)
	leader := testConn(t, ns, 20*time.Second)
	var mu sync.Mutex // guards prepared
	prepared := map[uint16][]uint64{}
	failing := map[uint16]bool{}
	var servers []*RoundServer
	for _, h := range []uint16{1, 2, 3} {
		c := testConn(t, ns, 20*time.Second)
		s, err := c.ServeRounds(h, func(r uint64) error {
			mu.Lock()
			defer mu.Unlock()
			if failing[h] {
				return errors.New("cannot publish")
			}
			// The round must not be acknowledged before it is prepared.
			if un, err := c.Unacked(r, []uint16{h}); err != nil || len(un) != 1 {
				return fmt.Errorf("round %d acknowledged before prepare (%v)", r, err)
			}
			prepared[h] = append(prepared[h], r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	if r, err := leader.Round(); err != nil || r != 0 {
		t.Fatalf("round before any: %d %v", r, err)
	}
	r, err := leader.BeginRound(0, 10*time.Second)
	if err != nil || r != 1 {
		t.Fatalf("begin: %d %v", r, err)
	}
	un, err := leader.Unacked(1, []uint16{1, 2, 3})
	if err != nil || len(un) != 0 {
		t.Fatalf("unacked after round 1: %v %v", un, err)
	}
	if _, err := leader.BeginRound(0, time.Second); !errors.Is(err, ErrRaced) {
		t.Fatalf("begin from a stale round: %v, want ErrRaced", err)
	}
	// Host 2 dies, host 3 cannot publish.
	servers[1].Stop()
	servers = slices.Delete(servers, 1, 2)
	mu.Lock()
	failing[3] = true
	mu.Unlock()
	if r, err = leader.BeginRound(1, 10*time.Second); err != nil || r != 2 {
		t.Fatalf("round 2: %d %v", r, err)
	}
	un, err = leader.Unacked(2, []uint16{1, 2, 3})
	if err != nil || !slices.Equal(un, []uint16{2, 3}) {
		t.Fatalf("unacked after round 2: %v %v, want [2 3]", un, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(prepared[1], []uint64{1, 2}) || !slices.Equal(prepared[2], []uint64{1}) || !slices.Equal(prepared[3], []uint64{1}) {
		t.Fatalf("prepared: %v", prepared)
	}
	if cur, err := leader.Round(); err != nil || cur != 2 {
		t.Fatalf("round: %d %v", cur, err)
	}
}

// A fenced host stops answering rounds: Stop and its client's Close
// return though the unwatch is refused (see watchLoop; the lease watch's
// twin, TestHandoverStopWhenFenced).
func TestRoundsStopWhenFenced(t *testing.T) {
	ns := testNamespace(t)
	a, b := testConn(t, ns, 5*time.Second), testConn(t, ns, 20*time.Second)
	s, err := a.ServeRounds(1, func(uint64) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	addr, err := a.Addr()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Blocklist(addr); err != nil {
		t.Fatal(err)
	}
	if err := a.io.WriteFull("bh.late", []byte("late")); err == nil {
		t.Fatal("the fenced host's write went through")
	}
	stopped := make(chan error, 1)
	go func() {
		err := s.Stop()
		a.Close()
		stopped <- err
	}()
	select {
	case err := <-stopped:
		t.Logf("stop of the fenced host's rounds: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Stop of a fenced host's rounds, then its client's Close, did not return in a minute")
	}
}
