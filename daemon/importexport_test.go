package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"blockhash/engine"
)

// importStream starts an import through c and writes data framed; with
// end it sends the end frame. It returns the daemon's last answer.
func importStream(t *testing.T, c Client, r Request, data []byte, end bool) (Response, error) {
	t.Helper()
	r.Op, r.ID = "import", -1
	conn, _, err := c.StreamAnswer(r)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	fw := NewFrameWriter(conn)
	// A write fails when the daemon stopped reading: its answer says why.
	if _, err := fw.Write(data); err == nil && end {
		fw.Close()
	}
	conn.CloseWrite()
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error != "" {
		return resp, &RemoteError{Msg: resp.Error}
	}
	return resp, nil
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// An import through the daemon writes the device (created at the image's
// size when missing) and answers with its figures; a stream cut short
// (no end frame, or the connection dropped) fails it as offline: a device
// it created is deleted, an existing one keeps what was written; the
// daemon goes on.
func TestImportThroughDaemon(t *testing.T) {
	d, c, _ := serving(t)
	img := append(fill(64<<10, 7), make([]byte, 64<<10)...)
	resp, err := importStream(t, c, Request{Name: "n", Size: int64(len(img)), From: "image x"}, img, true)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Size != int64(len(img)) || len(resp.Devices) != 1 || resp.Devices[0].Stats.DataBlocks != 16 || resp.Devices[0].Stats.ZeroBlocks != 16 {
		t.Fatalf("answer %+v", resp)
	}
	dev, err := d.eng.Device("n")
	if err != nil || dev.Size() != int64(len(img)) {
		t.Fatalf("device n: %v", err)
	}
	got := make([]byte, len(img))
	dev.ReadAt(got, 0)
	if !bytes.Equal(got, img) {
		t.Fatal("device n differs from the image")
	}

	// Cut short: a new device is deleted again.
	_, err = importStream(t, c, Request{Name: "cut", Size: 1 << 20, From: "image y"}, fill(256<<10, 1), false)
	if err == nil || !strings.Contains(err.Error(), "cut short") || !strings.Contains(err.Error(), "deleted again") {
		t.Fatalf("cut-short import: %v", err)
	}
	if _, err := d.eng.Device("cut"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the new device was left behind: %v", err)
	}
	// Cut short into an existing device, its size unknown (standard
	// input): what was written stays.
	if _, err := d.eng.CreateDevice("e", 1<<20); err != nil {
		t.Fatal(err)
	}
	_, err = importStream(t, c, Request{Name: "e", From: "standard input"}, fill(128<<10, 9), false)
	if err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("cut-short import into e: %v", err)
	}
	e, err := d.eng.Device("e")
	if err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 128<<10)
	e.ReadAt(got, 0)
	if !bytes.Equal(got, fill(128<<10, 9)) {
		t.Fatal("what the cut-short import wrote into e is gone")
	}

	// The connection dropped mid-stream: the same, and the daemon goes on.
	conn, _, err := c.StreamAnswer(Request{Op: "import", Name: "drop", Size: 1 << 20, From: "image z", ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	NewFrameWriter(conn).Write(fill(100<<10, 3))
	conn.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d.mu.Lock()
		_, busy := d.busy["drop"]
		d.mu.Unlock()
		if !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dropped import never ended")
		}
	}
	if _, err := d.eng.Device("drop"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the dropped import's new device was left behind: %v", err)
	}
	if !c.Running() {
		t.Fatal("the daemon stopped answering")
	}

	// The checks of the offline import of standard input.
	for _, tc := range []struct {
		r    Request
		data []byte
		want string
	}{
		{Request{Name: "s1", Size: 1 << 20, From: "standard input"}, fill(512<<10, 1), "ended after 524288 bytes, short of --size 1048576"},
		{Request{Name: "s2", Size: 64 << 10, From: "standard input"}, fill(128<<10, 1), "more than --size 65536"},
		{Request{Name: "e", From: "standard input"}, fill(2<<20, 1), "standard input is larger than device e (1.0 MiB)"},
		{Request{Name: "e", From: "standard input"}, fill(1000, 1), "not a multiple of 512"},
		{Request{Name: "e", From: "standard input"}, nil, "standard input is empty"},
		{Request{Name: "e", Size: 2 << 20, From: "standard input"}, nil, "standard input (2.0 MiB) is larger than device e (1.0 MiB)"},
		{Request{Name: "s3", From: "standard input"}, fill(4096, 1), "only with --size"},
		{Request{Name: "bad@name", Size: 4096}, fill(4096, 1), "name"},
	} {
		_, err := importStream(t, c, tc.r, tc.data, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("import %+v: %v; want an error saying %q", tc.r, err, tc.want)
		}
		if strings.HasPrefix(tc.r.Name, "s") {
			if _, err := d.eng.Device(tc.r.Name); !errors.Is(err, engine.ErrNotFound) {
				t.Errorf("failed import left device %s: %v", tc.r.Name, err)
			}
		}
	}
}

// A volume being imported is busy: not served, rolled back, deleted or
// imported into meanwhile; a served device is not imported into.
func TestImportBusy(t *testing.T) {
	d, c, _ := serving(t)
	if _, err := d.Add(Request{Name: "served", Size: 1 << 20, ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := importStream(t, c, Request{Name: "served", Size: 4096}, fill(4096, 1), true); err == nil ||
		!strings.Contains(err.Error(), "blockhash del served --keep-data") {
		t.Fatalf("import into a served device: %v", err)
	}
	conn, _, err := c.StreamAnswer(Request{Op: "import", Name: "b", Size: 8192, ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := d.Add(Request{Name: "b", ID: -1}); !errors.Is(err, ErrInUse) {
		t.Fatalf("add during an import: %v", err)
	}
	if err := d.DeleteVolume(Request{Name: "b"}); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete during an import: %v", err)
	}
	if _, err := importStream(t, c, Request{Name: "b", Size: 4096}, fill(4096, 1), true); err == nil || !strings.Contains(err.Error(), "being imported") {
		t.Fatalf("second import: %v", err)
	}
	fw := NewFrameWriter(conn)
	fw.Write(fill(8192, 2))
	fw.Close()
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil || resp.Error != "" {
		t.Fatalf("import: %v %q", err, resp.Error)
	}
	if _, err := d.Add(Request{Name: "b", ID: -1}); err != nil {
		t.Fatalf("add after the import: %v", err)
	}
}

// exportAll reads an export's stream through c.
func exportAll(c Client, name string) ([]byte, error) {
	conn, resp, err := c.StreamAnswer(Request{Op: "export", Name: name, ID: -1})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	b, err := io.ReadAll(conn)
	if err == nil && int64(len(b)) != resp.Size {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// An export streams a snapshot, a device not served or one served
// read-only; a device served writable is refused (export a snapshot),
// and keeps serving.
func TestExportThroughDaemon(t *testing.T) {
	d, c, k := serving(t)
	img := append(fill(64<<10, 5), make([]byte, 192<<10)...)
	if _, err := importStream(t, c, Request{Name: "d", Size: int64(len(img))}, img, true); err != nil {
		t.Fatal(err)
	}
	if got, err := exportAll(c, "d"); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("export of d: %v (%d bytes)", err, len(got))
	}
	if _, err := d.Add(Request{Name: "d", ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := exportAll(c, "d"); err == nil || !strings.Contains(err.Error(), "export a snapshot of it") {
		t.Fatalf("export of served d: %v", err)
	}
	if err := d.Snapshot(Request{Name: "d", Snap: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.backend(0).WriteAt(fill(4096, 8), 0); err != nil { // the guest writes on
		t.Fatal(err)
	}
	if got, err := exportAll(c, "d@s"); err != nil || !bytes.Equal(got, img) {
		t.Fatalf("export of d@s: %v", err)
	}
	if _, err := d.Del(Request{Name: "d", KeepData: true, ID: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add(Request{Name: "d", ReadOnly: true, ID: -1}); err != nil {
		t.Fatal(err)
	}
	want := append(fill(4096, 8), img[4096:]...)
	if got, err := exportAll(c, "d"); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("export of d served read-only: %v", err)
	}
	// While its export streams, the read-only device is not deleted.
	if err := d.DeleteVolume(Request{Name: "d@s"}); err != nil {
		t.Fatal(err)
	}
	conn, _, err := c.StreamAnswer(Request{Op: "export", Name: "d", ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Del(Request{Name: "d", ID: -1}); !errors.Is(err, ErrInUse) {
		t.Fatalf("del of d during its export: %v", err)
	}
	io.Copy(io.Discard, conn)
	conn.Close()
	if _, err := exportAll(c, "nope"); !errors.Is(err, &RemoteError{}) && (err == nil || !strings.Contains(err.Error(), "no such device")) {
		t.Fatalf("export of nope: %v", err)
	}
	// Nothing stays busy.
	d.mu.Lock()
	n := len(d.busy)
	d.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d volumes left busy", n)
	}
}

// create and fsck through the socket; fsck --repair is refused.
func TestCreateFsckThroughDaemon(t *testing.T) {
	_, c, _ := serving(t)
	resp, err := c.Do(Request{Op: "create", Name: "x", Size: 1 << 20, ID: -1})
	if err != nil || resp.Size != 1<<20 {
		t.Fatalf("create: %v %+v", err, resp)
	}
	if _, err := c.Do(Request{Op: "create", Name: "x", Size: 1 << 20, ID: -1}); err == nil {
		t.Fatal("created x twice")
	}
	resp, err = c.Do(Request{Op: "fsck", ID: -1})
	if err != nil || resp.Fsck == nil || resp.Fsck.Devices != 1 || !resp.Fsck.OK() {
		t.Fatalf("fsck: %v %+v", err, resp.Fsck)
	}
	if _, err := c.Do(Request{Op: "fsck", Repair: true, ID: -1}); err == nil || !strings.Contains(err.Error(), "stop the daemon first") {
		t.Fatalf("fsck --repair: %v", err)
	}
}

// The frame decoder reads back what FrameWriter wrote, and never fails
// otherwise than with an error on arbitrary input.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 3, 'a'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		var buf bytes.Buffer
		fw := NewFrameWriter(&buf)
		fw.Write(in)
		fw.Close()
		got, err := io.ReadAll(&frameReader{r: &buf})
		if err != nil || !bytes.Equal(got, in) {
			t.Fatalf("round trip: %v", err)
		}
		io.ReadAll(&frameReader{r: bytes.NewReader(in)})
	})
}

// A client that stalls mid-import or mid-export does not hold up the
// daemon's shutdown: its stream is closed (the import fails, its new
// device deleted).
func TestStalledStreamsShutdown(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if err := d.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Serve(ctx) }()
	c := Client{Socket: filepath.Join(filepath.Dir(dir), "s.sock")}
	if _, err := d.eng.CreateDevice("big", 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := d.eng.Flush(); err != nil {
		t.Fatal(err)
	}
	exp, _, err := c.StreamAnswer(Request{Op: "export", Name: "big", ID: -1}) // never read
	if err != nil {
		t.Fatal(err)
	}
	defer exp.Close()
	imp, _, err := c.StreamAnswer(Request{Op: "import", Name: "new", Size: 1 << 20, ID: -1}) // never written
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Close()
	cancel()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the daemon's shutdown waits for stalled streams")
	}
	if _, err := d.eng.Device("new"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("the stalled import's new device was left behind: %v", err)
	}
}
