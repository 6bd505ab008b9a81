package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"blockhash/engine"
)

// storeFigures reads `stats --json` through sock (or the store).
func storeFigures(t *testing.T, store, sock string) engine.Stats {
	t.Helper()
	r := cliSock(store, sock, "stats", "--json")
	if r.code != 0 {
		t.Fatalf("stats --json: exit %d %s", r.code, r.stderr)
	}
	var s engine.Stats
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func domainFigures(s engine.Stats) map[string][3]uint64 {
	out := map[string][3]uint64{}
	for _, d := range s.Domains {
		out[d.Name] = [3]uint64{uint64(d.Devices), d.DataBlocks, d.StoredBlocks}
	}
	return out
}

// Devices put into dedup domains with --domain share blocks only within
// their domain: two domains importing the same image store it twice,
// the devices of one domain share it. The same through the daemon (add,
// create and import), and refusals change nothing.
func TestDomainsCLI(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	noSock := filepath.Join(dir, "no-daemon.sock")
	mustCLI(t, store, "init", "--extent-size", "64K")
	img := blocksImage(t, dir, "img", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
	mustCLI(t, store, "import", "a1", img, "--domain", "tenant-a")
	mustCLI(t, store, "import", "a2", img, "--domain", "tenant-a")
	mustCLI(t, store, "import", "b1", img, "--domain", "tenant-b")
	mustCLI(t, store, "import", "p", img)
	s := storeFigures(t, store, noSock)
	want := map[string][3]uint64{"default": {1, 16, 16}, "tenant-a": {2, 32, 16}, "tenant-b": {1, 16, 16}}
	if got := domainFigures(s); s.UniqueBlocks != 48 || len(got) != 3 || got["default"] != want["default"] || got["tenant-a"] != want["tenant-a"] || got["tenant-b"] != want["tenant-b"] {
		t.Fatalf("stored %d blocks, domains %v; want 48 and %v", s.UniqueBlocks, got, want)
	}
	out := mustCLI(t, store, "stats")
	if !strings.Contains(out, "dedup domains") || !strings.Contains(out, "tenant-a") {
		t.Fatalf("stats shows no domains:\n%s", out)
	}
	_, ents := listJSON(t, store, noSock)
	for _, e := range ents {
		wantDom := map[string]string{"a1": "tenant-a", "a2": "tenant-a", "b1": "tenant-b", "p": "default"}[e.Name]
		if e.Domain != wantDom {
			t.Fatalf("list: %s in domain %q, want %q", e.Name, e.Domain, wantDom)
		}
	}
	if out := mustCLI(t, store, "list"); !strings.HasPrefix(out, "DOMAIN") {
		t.Fatalf("list has no DOMAIN column:\n%s", out)
	}

	// Refusals: one line, nothing changed.
	before := mustCLI(t, store, "list", "--json")
	for _, args := range [][]string{
		{"import", "a1", img, "--domain", "tenant-b"},
		{"import", "p", img, "--domain", "tenant-a"},
		{"create", "x", "--size", "1M", "--domain", "no/slash"},
		{"create", "a1", "--size", "1M", "--domain", "tenant-a"},
		{"sync", "a1", "nohost", "-e", "false"},
		{"send", "a1"},
	} {
		r := cli(t, store, args...)
		if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("%v: exit %d, stderr %q: want one line and a failure", args, r.code, r.stderr)
		}
	}
	if after := mustCLI(t, store, "list", "--json"); after != before {
		t.Fatalf("a refused command changed the store:\n%s\nwas\n%s", after, before)
	}

	// Through the daemon.
	sock, stop := startDaemon(t, store)
	defer stop()
	for _, args := range [][]string{
		{"add", "n1", "--size", "1M", "--domain", "tenant-a"},
		{"create", "c1", "--size", "1M", "--domain", "tenant-c"},
		{"import", "c2", img, "--domain", "tenant-a"},
	} {
		if r := cliSock(store, sock, args...); r.code != 0 {
			t.Fatalf("%v through the daemon: %s", args, r.stderr)
		}
	}
	if r := cliSock(store, sock, "add", "b1", "--domain", "tenant-a"); r.code == 0 {
		t.Fatal("add b1 --domain tenant-a (b1 is tenant-b's): accepted")
	}
	if r := cliSock(store, sock, "send", "b1"); r.code == 0 || strings.Contains(r.stderr, "taken") {
		t.Fatalf("send b1 through the daemon: exit %d, stderr %q: want a refusal before any snapshot", r.code, r.stderr)
	}
	s = storeFigures(t, store, sock)
	got := domainFigures(s)
	if s.UniqueBlocks != 48 || got["tenant-a"] != [3]uint64{4, 48, 16} || got["tenant-c"] != [3]uint64{1, 0, 0} {
		t.Fatalf("through the daemon: stored %d, domains %v", s.UniqueBlocks, got)
	}
	_, ents = listJSON(t, store, sock)
	for _, e := range ents {
		if (e.Name == "n1" || e.Name == "c2") && e.Domain != "tenant-a" || e.Name == "c1" && e.Domain != "tenant-c" {
			t.Fatalf("list through the daemon: %s in %q", e.Name, e.Domain)
		}
	}
}
