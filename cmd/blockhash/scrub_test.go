package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"blockhash/engine"
)

// blockhash scrub (offline: no daemon runs) finds a damaged stored block,
// lists its device block, and the mark survives: the next scrub and fsck
// list it too.
func TestScrubCommand(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "64K")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 40))
	if out := mustCLI(t, store, "scrub", "--rate", "100"); !strings.Contains(out, "30 blocks checked") || !strings.Contains(out, "0 newly damaged") {
		t.Fatalf("scrub of a healthy store: %s", out)
	}
	// Slot 0 holds block 1 (block 0 of the image is zero).
	if err := flip(filepath.Join(store, "blocks", "extent-000000.dat"), 5); err != nil {
		t.Fatal(err)
	}
	r := cli(t, store, "scrub")
	if r.code != 1 || !strings.Contains(r.stdout, "1 newly damaged") || !strings.Contains(r.stdout, "stored block fails its digest") ||
		!strings.Contains(lastLine(r.stderr), "1 device blocks are damaged") {
		t.Fatalf("scrub: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = cli(t, store, "scrub", "--json")
	var rep engine.ScrubReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("scrub --json: %v\n%s", err, r.stdout)
	}
	want := engine.DamagedRange{Device: "d", FirstLBA: 1, Blocks: 1, Why: engine.WhyDamagedData}
	if r.code != 1 || rep.KnownDamaged != 1 || len(rep.Damaged) != 1 || rep.Damaged[0] != want {
		t.Fatalf("second scrub: exit %d %+v", r.code, rep)
	}
	if r := cli(t, store, "scrub", "--rate", "-1"); r.code != 2 {
		t.Fatalf("negative rate: exit %d", r.code)
	}
}
