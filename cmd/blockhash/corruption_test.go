package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"blockhash/engine"
)

// The corruption campaign (issue 8): for each kind of file in a store, with
// three devices holding data, damage it and check that
//
//	(a) the command that touches the damage fails with one clear line
//	    naming the file (or, for damage that quarantines, device and block);
//	(b) fsck reports lost data as device block ranges;
//	(c) fsck --repair brings the store back: it opens, and fsck is clean
//	    but for the listed lost blocks;
//	(d) no block outside the listed ranges, of any device, loses data.

type corruptCase struct {
	name   string
	damage func(t *testing.T, store string)
	// touch is the command that meets the damage; wantErr is in its error
	// ("" : the command succeeds, the damage is silent until fsck).
	touch   []string
	wantErr string
	lost    []string // devices that lose blocks (listed by fsck)
	gone    string   // a device that vanishes unlisted (its map file is gone)
	skip    string   // why (b)-(d) depend on another branch's work
	recover []string // the repair command before fsck (default: none)
	skipA   string   // why (a) depends on another branch's work
}

// campaignBlocks are the devices' sizes in 4 KiB blocks. Extents of 64 KiB
// hold 16 blocks: the devices' data spans several extent files.
var campaignBlocks = map[string]int{"a": 200, "b": 24, "c": 16}

func corruptCases() []corruptCase {
	ext := func(n int, suffix string) string { return filepath.Join("blocks", "extent-"+pad(n)+suffix) }
	at := func(rel string, off int64) func(*testing.T, string) {
		return func(t *testing.T, s string) {
			if err := flip(glob(t, s, rel), off); err != nil {
				t.Fatal(err)
			}
		}
	}
	truncate := func(rel string, size int64) func(*testing.T, string) {
		return func(t *testing.T, s string) {
			if err := os.Truncate(glob(t, s, rel), size); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(rel string) func(*testing.T, string) {
		return func(t *testing.T, s string) {
			if err := os.RemoveAll(filepath.Join(s, rel)); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := func(rel string) func(*testing.T, string) {
		return func(t *testing.T, s string) {
			remove(rel)(t, s)
			if err := os.Mkdir(filepath.Join(s, rel), 0o700); err != nil {
				t.Fatal(err)
			}
		}
	}
	garbage := func(rel string) func(*testing.T, string) {
		return func(t *testing.T, s string) {
			if err := os.WriteFile(filepath.Join(s, rel), bytes.Repeat([]byte("garbage!"), 100), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	exportA := []string{"export", "a"}
	return []corruptCase{
		{name: "superblock flipped", damage: at("superblock", 20), touch: []string{"stats"}, wantErr: "superblock",
			recover: []string{"init", "--recover-superblock"}},
		{name: "superblock missing", damage: remove("superblock"), touch: []string{"stats"}, wantErr: "superblock",
			recover: []string{"init", "--recover-superblock"}},
		{name: "journal garbage", damage: garbage("journal"), touch: []string{"stats"}},
		{name: "journal is a directory", damage: dir("journal"), touch: []string{"stats"}, wantErr: "journal"},
		// Device a is volume 1; its first table is page 1 of the map page
		// file and its leaves follow (import writes them in about block
		// order, so the block named is not fixed).
		{name: "volume header flipped", damage: at("devices/1.vol", 40), touch: exportA}, // read from its copy
		{name: "volume root flipped", damage: at("devices/1.vol", 8192+2), touch: exportA, wantErr: "device a block", lost: []string{"a"}},
		{name: "map table flipped", damage: at("mappages", 4096+5), touch: exportA, wantErr: "device a block", lost: []string{"a"}},
		{name: "map entry flipped", damage: at("mappages", 2*4096+48*5+7), touch: exportA, wantErr: "device a block", lost: []string{"a"}},
		{name: "map pages truncated", damage: truncate("mappages", 3*4096+100), touch: exportA, wantErr: "device a block", lost: []string{"a", "b", "c"}},
		{name: "volume file missing", damage: remove("devices/1.vol"), touch: exportA, wantErr: "no such device: a", gone: "a"},
		{name: "slot record flipped", damage: at(ext(0, ".meta"), 48*3+5), touch: []string{"stats"}, wantErr: "extent-000000.meta"},
		{name: "slot records truncated", damage: truncate(ext(1, ".meta"), 100), touch: []string{"stats"}, wantErr: "extent-000001.meta"},
		{name: "slot records missing", damage: remove(ext(1, ".meta")), touch: []string{"stats"}, wantErr: "extent-000001.meta"},
		{name: "slot records a directory", damage: dir(ext(1, ".meta")), touch: []string{"stats"}, wantErr: "extent-000001.meta"},
		{name: "extent data flipped", damage: at(ext(0, ".dat"), 100), touch: exportA, wantErr: "device a block 1", lost: []string{"a"}},
		{name: "extent data truncated", damage: truncate(ext(1, ".dat"), 5000), touch: []string{"stats"}, wantErr: "extent-000001.dat", lost: []string{"a"}},
		{name: "extent data missing (middle)", damage: remove(ext(1, ".dat")), touch: []string{"stats"}, wantErr: "extent", lost: []string{"a"}},
		{name: "extent data a directory", damage: dir(ext(1, ".dat")), touch: []string{"stats"}, wantErr: "extent-000001.dat", lost: []string{"a"}},
		{name: "extent data missing (last)", damage: remove(ext(lastExtent, ".dat")), touch: []string{"export", "c"}, wantErr: "extent-000011.dat",
			lost: []string{"c"}},
		// Issue 8 item 1: a kill while the store grows leaves empty files.
		{name: "extent files empty (growth cut short)", damage: func(t *testing.T, s string) {
			for _, suffix := range []string{".dat", ".meta"} {
				if err := os.WriteFile(filepath.Join(s, ext(lastExtent+1, suffix)), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}, touch: []string{"stats"}}, // the extent manifest says 12: leftovers are ignored
		{name: "index CURRENT missing", damage: remove("index/CURRENT"), touch: []string{"stats"}, wantErr: "CURRENT"},
		{name: "index CURRENT garbage", damage: garbage("index/CURRENT"), touch: []string{"stats"}, wantErr: "index"},
		{name: "index MANIFEST truncated", damage: truncate("index/MANIFEST-*", 10), touch: []string{"stats"}, wantErr: "MANIFEST"},
		// goleveldb drops a damaged log chunk (not StrictJournal, so that a
		// torn tail after a power cut does not stop the store): the
		// entries it held are missing, fsck finds and repair restores them.
		{name: "index log flipped", damage: at("index/*.log", 20), touch: []string{"stats"}},
		// A flipped byte in the newest table is not noticed at open (not
		// investigated why); fsck and repair must still hold.
		{name: "index table flipped", damage: at("index/*.ldb", 100), touch: []string{"stats"}},
		{name: "index is a file", damage: func(t *testing.T, s string) { remove("index")(t, s); garbage("index")(t, s) }, touch: []string{"stats"}, wantErr: "index"},
	}
}

// lastExtent is the number of the last extent file the campaign's store has.
const lastExtent = 11

func pad(n int) string { return strings.Repeat("0", 6-len(itoa(n))) + itoa(n) }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestCorruptionCampaign(t *testing.T) {
	for _, tc := range corruptCases() {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			mustCLI(t, store, "init", "--extent-size", "64K")
			images := map[string][]byte{}
			for _, name := range []string{"a", "b", "c"} {
				p := image(t, dir, name+".img", campaignBlocks[name])
				mustCLI(t, store, "import", name, p)
				images[name], _ = os.ReadFile(p)
			}
			if _, err := os.Stat(filepath.Join(store, "blocks", "extent-"+pad(lastExtent)+".dat")); err != nil {
				t.Fatalf("the store's last extent is not %d: %v", lastExtent, err)
			}
			tc.damage(t, store)

			// (a) one clear line naming the file.
			args := tc.touch
			if args[0] == "export" {
				args = append(slices.Clone(args), filepath.Join(dir, "out.img"))
			}
			r := cli(t, store, args...)
			last := lastLine(r.stderr)
			t.Logf("(a) %s: exit %d: %s", strings.Join(tc.touch, " "), r.code, last)
			switch {
			case tc.skipA != "" && !strings.Contains(last, tc.wantErr):
				t.Logf("(a) not checked, depends on another branch: %s", tc.skipA)
			case tc.wantErr == "" && r.code != 0:
				t.Fatalf("(a) %v: exit %d: %s", args, r.code, r.stderr)
			case tc.wantErr != "" && (r.code == 0 || !strings.Contains(last, tc.wantErr) || !strings.HasPrefix(last, "blockhash "+args[0]+": ")):
				t.Fatalf("(a) %v: exit %d, last line %q, want one line naming %q", args, r.code, last, tc.wantErr)
			}
			if tc.skip != "" {
				t.Skip("(a) checked; (b)-(d) depend on another branch: " + tc.skip)
			}
			if tc.recover != nil {
				mustCLI(t, store, tc.recover...)
			}

			// (b) fsck lists the lost data by device and block (with
			// --repair when the store does not open without it).
			var rep engine.FsckReport
			r = cli(t, store, "fsck", "--json")
			if r.code != 0 && !strings.HasPrefix(strings.TrimSpace(r.stdout), "{") {
				r = cli(t, store, "fsck", "--repair", "--json")
			} else {
				decode(t, r.stdout, &rep)
				checkLost(t, "(b) fsck", rep, tc.lost)
				r = cli(t, store, "fsck", "--repair", "--json")
			}
			if !strings.HasPrefix(strings.TrimSpace(r.stdout), "{") {
				t.Fatalf("(c) fsck --repair: exit %d: %s", r.code, r.stderr)
			}
			decode(t, r.stdout, &rep)
			checkLost(t, "(b) fsck --repair", rep, tc.lost)

			// (c) the store opens and fsck is clean but for the lost blocks.
			r = cli(t, store, "fsck", "--json")
			if !strings.HasPrefix(strings.TrimSpace(r.stdout), "{") {
				t.Fatalf("(c) fsck after repair: exit %d: %s", r.code, r.stderr)
			}
			rep = engine.FsckReport{}
			decode(t, r.stdout, &rep)
			if !rep.Consistent() || (r.code == 0) != (len(tc.lost) == 0) {
				t.Fatalf("(c) fsck after repair: exit %d, %+v", r.code, rep)
			}
			checkLost(t, "(c) fsck after repair", rep, tc.lost)

			// (d) every block outside the listed ranges reads back.
			delete(images, tc.gone)
			checkBlocks(t, store, images, rep.Damaged)
		})
	}
}

// glob names the last (newest) file matching pattern (relative to store).
func glob(t *testing.T, store, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(store, pattern))
	if len(m) == 0 {
		t.Fatalf("no file matches %s", pattern)
	}
	return m[len(m)-1]
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func decode(t *testing.T, s string, rep *engine.FsckReport) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), rep); err != nil {
		t.Fatalf("fsck --json: %v\n%s", err, s)
	}
}

// checkLost checks that the damage listed is on the devices expected.
func checkLost(t *testing.T, what string, rep engine.FsckReport, want []string) {
	t.Helper()
	var got []string
	for _, r := range rep.Damaged {
		if strings.HasPrefix(r.Why, "device offline") && !slices.Contains(want, r.Device) {
			continue // offline until repaired, not lost
		}
		if !slices.Contains(got, r.Device) {
			got = append(got, r.Device)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("%s lists damage on devices %v, want %v: %v", what, got, want, rep.Damaged)
	}
}

// checkBlocks reads every block of every device and compares it with its
// image, but for the blocks listed as damaged (which must fail to read).
func checkBlocks(t *testing.T, store string, images map[string][]byte, damaged []engine.DamagedRange) {
	t.Helper()
	e, err := engine.Open(store, engine.Options{CommitInterval: -1})
	if err != nil {
		t.Fatalf("(d) open: %v", err)
	}
	defer e.Close()
	for name, img := range images {
		listed := func(lba uint64) bool {
			for _, r := range damaged {
				if r.Device == name && (r.Blocks == 0 || lba >= r.FirstLBA && lba < r.FirstLBA+r.Blocks) {
					return true
				}
			}
			return false
		}
		if listed(0) && slices.ContainsFunc(damaged, func(r engine.DamagedRange) bool { return r.Device == name && r.Blocks == 0 }) {
			continue // the whole device is lost, and said so
		}
		d, err := e.Device(name)
		if err != nil {
			t.Fatalf("(d) device %s: %v", name, err)
		}
		buf := make([]byte, engine.BlockSize)
		for lba := range uint64(len(img) / engine.BlockSize) {
			_, err := d.ReadAt(buf, int64(lba)*engine.BlockSize)
			if listed(lba) {
				if err == nil && !bytes.Equal(buf, img[lba*engine.BlockSize:(lba+1)*engine.BlockSize]) {
					t.Fatalf("(d) device %s block %d is listed as lost but reads other data without an error", name, lba)
				}
				continue
			}
			if err != nil {
				t.Fatalf("(d) device %s block %d (not listed as lost): %v", name, lba, err)
			}
			if !bytes.Equal(buf, img[lba*engine.BlockSize:(lba+1)*engine.BlockSize]) {
				t.Fatalf("(d) device %s block %d (not listed as lost) reads wrong", name, lba)
			}
		}
	}
}
