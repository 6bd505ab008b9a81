package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"blockhash/engine"
)

// A scrub request verifies the served store while its devices serve, and
// answers with the damaged device blocks.
func TestScrubOverSocket(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Serve(ctx)
	c := Client{Socket: d.o.Socket}
	if _, err := c.Do(Request{Op: "add", Name: "x", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	b := k.backend(0)
	data := make([]byte, 3*engine.BlockSize)
	for i := range data {
		data[i] = byte(i*7 + i/4096)
	}
	if _, err := b.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(Request{Op: "scrub"})
	if err != nil || resp.Scrub == nil || resp.Scrub.BlocksChecked != 3 || resp.Scrub.NewDamaged != 0 {
		t.Fatalf("scrub of a healthy store: %v %+v", err, resp.Scrub)
	}
	// Damage the first stored block (slot 0).
	f, err := os.OpenFile(filepath.Join(dir, "blocks", "extent-000000.dat"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xee, 0xee}, 10)
	f.Close()
	resp, err = c.Do(Request{Op: "scrub", Rate: 1 << 20})
	if err != nil || resp.Scrub == nil || resp.Scrub.NewDamaged != 1 {
		t.Fatalf("scrub of a damaged store: %v %+v", err, resp.Scrub)
	}
	want := engine.DamagedRange{Device: "x", FirstLBA: 0, Blocks: 1, Why: engine.WhyDamagedData}
	if len(resp.Scrub.Damaged) != 1 || resp.Scrub.Damaged[0] != want {
		t.Fatalf("damaged %v, want %v", resp.Scrub.Damaged, want)
	}
	// The device keeps serving: the healthy blocks read, the damaged one
	// fails, and writing its content again heals it.
	got := make([]byte, engine.BlockSize)
	if _, err := b.ReadAt(got, engine.BlockSize); err != nil || !bytes.Equal(got, data[engine.BlockSize:2*engine.BlockSize]) {
		t.Fatalf("healthy block: %v", err)
	}
	if _, err := b.ReadAt(got, 0); err == nil {
		t.Fatal("the damaged block reads without an error")
	}
	if _, err := b.WriteAt(data[:engine.BlockSize], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:engine.BlockSize]) {
		t.Fatalf("healed block: %v", err)
	}
	if _, err := c.Do(Request{Op: "scrub", Rate: -1}); err == nil {
		t.Fatal("a negative rate was accepted")
	}
}

// A slow scrub does not hold up shutdown: it is canceled and answers with
// what it checked.
func TestScrubStopsAtShutdown(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() { served <- d.Serve(ctx) }()
	c := Client{Socket: d.o.Socket}
	if _, err := c.Do(Request{Op: "add", Name: "x", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.backend(0).WriteAt(bytes.Repeat([]byte{3}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	k.backend(0).Flush()
	type answer struct {
		resp Response
		err  error
	}
	got := make(chan answer)
	go func() {
		resp, err := c.Do(Request{Op: "scrub", Rate: 1}) // one byte a second: days
		got <- answer{resp, err}
	}()
	for {
		d.scrubMu.Lock()
		running := d.scrubStop != nil
		d.scrubMu.Unlock()
		if running {
			break
		}
		runtime.Gosched()
	}
	cancel()
	a := <-got
	if a.err != nil || a.resp.Scrub == nil || !a.resp.Scrub.Canceled {
		t.Fatalf("scrub at shutdown: %v %+v", a.err, a.resp.Scrub)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// An interrupted `blockhash scrub` (the client goes away) stops the scrub.
func TestScrubStopsWhenClientLeaves(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Serve(ctx)
	c := Client{Socket: d.o.Socket}
	if _, err := c.Do(Request{Op: "add", Name: "x", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.backend(0).WriteAt(bytes.Repeat([]byte{3}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	k.backend(0).Flush()
	conn, err := net.Dial("unix", d.o.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(conn).Encode(Request{Op: "scrub", Rate: 1}); err != nil {
		t.Fatal(err)
	}
	running := func() bool {
		d.scrubMu.Lock()
		defer d.scrubMu.Unlock()
		return d.scrubStop != nil
	}
	for !running() {
		runtime.Gosched()
	}
	conn.Close()
	for running() {
		runtime.Gosched()
	}
	// A new scrub can start (the old one is gone).
	if resp, err := c.Do(Request{Op: "scrub"}); err != nil || resp.Scrub == nil || resp.Scrub.Canceled {
		t.Fatalf("scrub after an interrupted one: %v %+v", err, resp.Scrub)
	}
}
