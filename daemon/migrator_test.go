package daemon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"blockhash/replica"
)

// socketRemote is a Remote that runs the receive on another daemon
// through its socket, relayed as the CLI relays a remote shell.
func socketRemote(c Client) Remote {
	return func(dev string, args ...string) (RemoteSession, error) {
		r := Request{Op: "receive", Name: dev, ID: -1}
		for _, a := range args {
			switch a {
			case "--live":
				r.Live = true
			case "--serve":
				r.Serve = true
			case "--force":
				r.Force = true
			}
		}
		conn, err := c.Stream(r)
		if err != nil {
			return RemoteSession{}, err
		}
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := replica.Relay(conn, inR, outW, conn.CloseWrite)
			outW.Close()
			conn.Close()
			done <- err
		}()
		return RemoteSession{In: inW, Out: outR, Wait: func() error {
			err := <-done
			inR.Close()
			return err
		}}, nil
	}
}

// guest writes 4 KiB blocks in a loop (each block holds its sequence
// number and LBA) until a write fails, and records what was acknowledged.
type guest struct {
	b interface {
		WriteAt([]byte, int64) (int, error)
	}
	blocks   int64
	iops     int // 0: as fast as it can
	mu       sync.Mutex
	acked    map[int64]uint64 // LBA -> last acknowledged sequence number
	maxWait  atomic.Int64     // longest write, ns
	failures atomic.Int64
}

func (g *guest) run(stop <-chan struct{}) {
	buf := make([]byte, 4096)
	start := time.Now()
	for seq := uint64(1); ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		if g.iops > 0 {
			if ahead := time.Duration(seq)*time.Second/time.Duration(g.iops) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		lba := int64(seq*7919) % g.blocks
		binary.LittleEndian.PutUint64(buf, seq)
		binary.LittleEndian.PutUint64(buf[8:], uint64(lba))
		start := time.Now()
		_, err := g.b.WriteAt(buf, lba*4096)
		if d := time.Since(start).Nanoseconds(); d > g.maxWait.Load() {
			g.maxWait.Store(d)
		}
		if err != nil {
			g.failures.Add(1)
			return
		}
		g.mu.Lock()
		g.acked[lba] = seq
		g.mu.Unlock()
	}
}

// migrateWithGuest fills a device of size bytes on daemon a (dup-heavy
// after the first distinct blocks), migrates it to b while a guest
// writes, and checks b serves every acknowledged write.
func migrateWithGuest(t testing.TB, size int64, distinct, iops int) SwitchReport {
	_, ca, ka := serving(t)
	_, cb, kb := serving(t)
	if _, err := ca.Do(Request{Op: "add", Name: "vm", Size: size, ID: -1}); err != nil {
		t.Fatal(err)
	}
	be := ka.backend(0)
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		for i := 0; i < len(chunk); i += 4096 {
			binary.LittleEndian.PutUint64(chunk[i:], uint64((off+int64(i))/4096)%uint64(distinct)+1)
		}
		if _, err := be.WriteAt(chunk, off); err != nil {
			t.Fatal(err)
		}
	}
	var rounds []replica.Stats
	m := Migrator{Client: ca, Remote: socketRemote(cb), Rounds: 3, MaxDelta: 1 << 20,
		Progress: func(_ int, st replica.Stats) { rounds = append(rounds, st) }}
	g := &guest{b: be, blocks: size / 4096, iops: iops, acked: map[int64]uint64{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { g.run(stop) })
	if err := m.Prepare("vm"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	rep, err := m.Switch("vm")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(rounds) == 0 {
		t.Fatal("no rounds")
	}
	// A no longer serves it; B does, with every acknowledged write.
	if l := mustList(t, ca); len(l) != 0 {
		t.Fatalf("the source still serves %+v", l)
	}
	nb := kb.backend(0)
	buf := make([]byte, 4096)
	g.mu.Lock()
	defer g.mu.Unlock()
	for lba, seq := range g.acked {
		if _, err := nb.ReadAt(buf, lba*4096); err != nil {
			t.Fatal(err)
		}
		if got := binary.LittleEndian.Uint64(buf); got < seq || binary.LittleEndian.Uint64(buf[8:]) != uint64(lba) {
			t.Fatalf("block %d on the destination holds write %d, the guest had write %d acknowledged", lba, got, seq)
		}
	}
	return rep
}

func mustList(t testing.TB, c Client) []DeviceInfo {
	resp, err := c.Do(Request{Op: "list", ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Devices
}

func TestMigrateWithGuestWriting(t *testing.T) {
	rep := migrateWithGuest(t, 64<<20, 4096, 0)
	t.Logf("switch: pause %v (drain %v), %d blocks in the last round", rep.Pause, rep.Drain, rep.Stats.BlocksSent)
}

// TestMigrateSwitchFailsResumes: a switch whose last round fails leaves
// the device serving here, its held I/O going on.
func TestMigrateSwitchFailsResumes(t *testing.T) {
	_, ca, ka := serving(t)
	if _, err := ca.Do(Request{Op: "add", Name: "vm", Size: 4 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	broken := func(dev string, args ...string) (RemoteSession, error) {
		return RemoteSession{}, errors.New("no route to host")
	}
	m := Migrator{Client: ca, Remote: broken}
	if _, err := m.Switch("vm"); err == nil {
		t.Fatal("a switch to an unreachable host succeeded")
	}
	done := make(chan error, 1)
	go func() {
		_, err := ka.backend(0).WriteAt(bytes.Repeat([]byte{1}, 4096), 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("write after a failed switch: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device stayed paused after a failed switch")
	}
	if l := mustList(t, ca); len(l) != 1 {
		t.Fatalf("the device is not served after a failed switch: %+v", l)
	}
}

// BenchmarkMigrateSwitch measures a migration's switch of a device with
// BLOCKHASH_MIGRATE_GIB GiB written (default 10) while a guest writes
// random 4 KiB blocks at BLOCKHASH_MIGRATE_IOPS (default 1000; 0: as fast
// as it can): the pause its I/O sees (pause_ms), the drain and flush
// (drain_ms), and the last round's size.
func BenchmarkMigrateSwitch(b *testing.B) {
	gib, iops := int64(10), 1000
	if s := os.Getenv("BLOCKHASH_MIGRATE_GIB"); s != "" {
		gib, _ = strconv.ParseInt(s, 10, 64)
	}
	if s := os.Getenv("BLOCKHASH_MIGRATE_IOPS"); s != "" {
		iops, _ = strconv.Atoi(s)
	}
	for range b.N {
		rep := migrateWithGuest(b, gib<<30, 4096, iops)
		b.ReportMetric(float64(rep.Pause.Microseconds())/1000, "pause_ms")
		b.ReportMetric(float64(rep.Drain.Microseconds())/1000, "drain_ms")
		b.ReportMetric(float64(rep.Stats.BlocksSent), "last_round_blocks")
	}
}
