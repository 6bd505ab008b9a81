package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"blockhash/daemon"
)

// blocksImage writes an image of the given blocks: block seed s is 4 KiB
// of s's bytes, 0 an all-zero block.
func blocksImage(t *testing.T, dir, name string, seeds ...byte) string {
	t.Helper()
	var b []byte
	for _, s := range seeds {
		b = append(b, bytes.Repeat([]byte{s}, 4096)...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func listJSON(t *testing.T, store, sock string) (string, []daemon.ListEntry) {
	t.Helper()
	r := cliSock(store, sock, "list", "--json")
	if r.code != 0 {
		t.Fatalf("list --json: exit %d %s", r.code, r.stderr)
	}
	var ents []daemon.ListEntry
	if err := json.Unmarshal([]byte(r.stdout), &ents); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	return r.stdout, ents
}

// list prints the same entries, in the same schema, whether the daemon
// answers or the store (and the daemon's state file) is read: a device
// the daemon serves differs only in its state once the daemon stops.
func TestListSameWithAndWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "64K")
	// a: 1 2 3 4 0 5 5 6; b: 6 7 1 (6 and 1 are a's too).
	mustCLI(t, store, "import", "a", blocksImage(t, dir, "a.img", 1, 2, 3, 4, 0, 5, 5, 6))
	mustCLI(t, store, "import", "b", blocksImage(t, dir, "b.img", 6, 7, 1))
	mustCLI(t, store, "snapshot", "a", "s")
	mustCLI(t, store, "clone", "a@s", "c")
	noSock := filepath.Join(dir, "no-daemon.sock")

	offline, ents := listJSON(t, store, noSock)
	type figures struct {
		kind                             string
		data, zero, unique, shared, used uint64
		origin                           string
	}
	want := map[string]figures{
		// a, its snapshot and the clone hold the same pages: nothing is
		// any one's alone.
		"a":   {"device", 7, 1, 0, 7, 0, ""},
		"a@s": {"snapshot", 7, 1, 0, 7, 0, ""},
		"c":   {"device", 7, 1, 0, 7, 0, "a@s"},
		"b":   {"device", 3, 0, 1, 2, 0, ""},
	}
	if len(ents) != len(want) {
		t.Fatalf("list: %d entries, want %d:\n%s", len(ents), len(want), offline)
	}
	for _, e := range ents {
		got := figures{e.Kind, e.DataBlocks, e.ZeroBlocks, e.UniqueBlocks, e.SharedBlocks, e.UsedBlocks, e.Origin}
		if got != want[e.Name] || e.Served != nil || e.StoreID == 0 {
			t.Fatalf("list: %s is %+v (store id %d, served %v), want %+v", e.Name, got, e.StoreID, e.Served, want[e.Name])
		}
	}
	offTable := mustCLI(t, store, "list")
	// stats shows the same figures per device.
	var st struct {
		Device struct {
			Unique uint64 `json:"unique_blocks"`
			Shared uint64 `json:"shared_blocks"`
		} `json:"device"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, store, "stats", "b", "--json")), &st); err != nil || st.Device.Unique != 1 || st.Device.Shared != 2 {
		t.Fatalf("stats b --json: %+v %v, want 1 unique and 2 shared blocks", st.Device, err)
	}
	if out := mustCLI(t, store, "stats", "b"); !regexp.MustCompile(`UNIQUE BLOCKS +SHARED BLOCKS.*\n +b +\S+ \S+ +0 +3 +1 +2 `).MatchString(out) {
		t.Fatalf("stats b:\n%s", out)
	}

	sock, stop := startDaemon(t, store)
	defer stop()
	if online, _ := listJSON(t, store, sock); online != offline {
		t.Fatalf("list --json through the daemon:\n%s\nwithout:\n%s", online, offline)
	}
	if r := cliSock(store, sock, "list"); r.stdout != offTable {
		t.Fatalf("list through the daemon:\n%s\nwithout:\n%s", r.stdout, offTable)
	}
	if r := cliSock(store, sock, "add", "b", "--read-only"); r.code != 0 {
		t.Fatalf("add b: %s", r.stderr)
	}
	_, served := listJSON(t, store, sock)
	stop()
	_, remembered := listJSON(t, store, noSock)
	for i, ents := range [][]daemon.ListEntry{served, remembered} {
		wantState := []string{"running", daemon.StateDaemonStopped}[i]
		for j := range ents {
			s := ents[j].Served
			if ents[j].Name != "b" {
				if s != nil {
					t.Fatalf("%s listed as served: %+v", ents[j].Name, s)
				}
				continue
			}
			if s == nil || s.State != wantState || s.Path != "/dev/ublkb0" || !s.ReadOnly || s.LBS != 512 && s.LBS != 4096 {
				t.Fatalf("b served: %+v, want %s on /dev/ublkb0 read-only", s, wantState)
			}
			s.State = ""
		}
	}
	a, _ := json.Marshal(served)
	b, _ := json.Marshal(remembered)
	if !bytes.Equal(a, b) {
		t.Fatalf("list through the daemon:\n%s\nafter it stopped:\n%s", a, b)
	}
	// A damaged state file: the volumes are listed, none served, with a
	// warning.
	if err := os.WriteFile(filepath.Join(store, "served.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cliSock(store, noSock, "list", "--json")
	if r.code != 0 || r.stdout != offline || !strings.Contains(r.stderr, "served.json") {
		t.Fatalf("list with a damaged state file: exit %d, stderr %q, stdout\n%s", r.code, r.stderr, r.stdout)
	}
}
