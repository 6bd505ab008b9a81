//go:build rados

package rados

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The child side of TestHostKilledMidWrite: a host that puts batches of
// blocks until it is killed, printing each acknowledged batch.
func TestMain(m *testing.M) {
	if os.Getenv("BLOCKHASH_RADOS_CHILD") != "" {
		os.Exit(crashChild())
	}
	os.Exit(m.Run())
}

// crashBlock is the block of content n (its first 8 bytes say n).
func crashBlock(n uint64) []byte {
	b := make([]byte, BlockSize)
	binary.LittleEndian.PutUint64(b, n)
	binary.LittleEndian.PutUint64(b[BlockSize-8:], ^n)
	return b
}

func crashKey(n uint64) []byte {
	k := make([]byte, KeySize)
	binary.LittleEndian.PutUint64(k, n)
	k[KeySize-1] = 0xc4
	return k
}

func crashChild() int {
	c, err := Connect(Config{ConfFile: os.Getenv("BLOCKHASH_CEPH_CONF"), Pool: "bh",
		Namespace: os.Getenv("BLOCKHASH_RADOS_CHILD"), Timeout: 20 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := c.OpenStore(9)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	next, _ := strconv.ParseUint(os.Getenv("BLOCKHASH_RADOS_FIRST"), 10, 64)
	r := rand.New(rand.NewPCG(next, 3))
	out := bufio.NewWriter(os.Stdout)
	for {
		n := 1 + r.IntN(48)
		keys := make([][]byte, n)
		data := make([]byte, 0, n*BlockSize)
		for i := range n {
			keys[i] = crashKey(next + uint64(i))
			data = append(data, crashBlock(next+uint64(i))...)
		}
		locs, err := s.Put(keys, data)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for i, l := range locs { // acknowledged: durable on the OSD
			fmt.Fprintf(out, "%d %d\n", next+uint64(i), uint64(l))
		}
		out.Flush()
		next += uint64(n)
	}
}

// A host SIGKILLed at random moments while it puts blocks: every block
// it was acknowledged for reads back after the restart, the pack it left
// open is sealed as found (its data and keys agree), and the restarted
// host writes on in new packs.
func TestHostKilledMidWrite(t *testing.T) {
	ns := testNamespace(t)
	c := testConn(t, ns, 20*time.Second)
	acked := map[uint64]Loc{}
	next := uint64(1)
	kills := 12
	if testing.Short() {
		kills = 4
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for k := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "BLOCKHASH_RADOS_CHILD="+ns, fmt.Sprintf("BLOCKHASH_RADOS_FIRST=%d", next))
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill it after a random number of acknowledged blocks, a random
		// moment into its next put.
		target := 1 + r.IntN(300)
		sc := bufio.NewScanner(pipe)
		read := func() bool {
			var n, l uint64
			if _, err := fmt.Sscanf(sc.Text(), "%d %d", &n, &l); err != nil {
				return false // the last line may be cut
			}
			acked[n] = Loc(l)
			next = max(next, n+1)
			return true
		}
		for got := 0; got < target && sc.Scan(); {
			if read() {
				got++
			}
		}
		time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for sc.Scan() {
			read()
		}
		_ = cmd.Wait()
		if stderr.Len() > 0 {
			t.Fatalf("kill %d: the host failed before it was killed: %s", k, stderr.String())
		}
		// The restart: the open pack is sealed as found.
		if _, err := c.OpenStore(9); err != nil {
			t.Fatalf("restart after kill %d: %v", k, err)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no block was ever acknowledged")
	}
	buf := make([]byte, BlockSize)
	for n, l := range acked {
		if err := c.ReadBlock(l, buf); err != nil {
			t.Fatalf("block %d at %v: %v", n, l, err)
		}
		if !bytes.Equal(buf, crashBlock(n)) {
			t.Fatalf("block %d at %v reads other content", n, l)
		}
	}
	packs, err := c.packs()
	if err != nil {
		t.Fatal(err)
	}
	var blocks int
	for _, id := range packs {
		st, err := c.ReadPackState(id)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Sealed || st.Count != len(st.Keys) || st.Size != int64(len(st.Keys))*BlockSize {
			t.Fatalf("%v after the restarts: sealed %v count %d keys %d size %d", id, st.Sealed, st.Count, len(st.Keys), st.Size)
		}
		blocks += len(st.Keys)
	}
	t.Logf("%d kills: %d blocks acknowledged, all read back; %d packs hold %d blocks (the rest landed but were not acknowledged before the kill)", kills, len(acked), len(packs), blocks)
}
