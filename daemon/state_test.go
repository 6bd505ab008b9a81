package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Every fixture in testdata/state decodes (good-*, empty) or is refused as
// corrupt (bad-*), and a decoded list encodes back to the same list.
func TestDecodeStateFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "state", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	want := map[string]int{"good-v1.json": 2, "good-v2.json": 3, "empty.json": 0} // device count
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			devs, err := decodeState(b)
			if strings.HasPrefix(name, "bad-") {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("decoded %+v, %v; want ErrCorrupt", devs, err)
				}
				return
			}
			n, ok := want[name]
			if !ok {
				t.Fatalf("fixture %s: name it good-*, empty or bad-*", name)
			}
			if err != nil || len(devs) != n {
				t.Fatalf("got %d devices, %v; want %d", len(devs), err, n)
			}
			checkStateRoundTrip(t, devs)
		})
	}
}

// goldenState is the list in testdata/state/good-v2.json.
var goldenState = []servedDevice{
	{Name: "win10", ID: 0, Queues: 2, Depth: 128, LBS: 512},
	{Name: "debian-12.img", ID: 7, Queues: 1, Depth: 4096, LBS: 4096, ReadOnly: true},
	{Name: "debian-12.img@before-upgrade", ID: 8, Queues: 1, Depth: 128, LBS: 512, ReadOnly: true},
}

// The state file's format is pinned: saveState writes good-v2.json byte
// for byte, and the version 1 file of older daemons (no read_only) still
// loads, every device read-write.
func TestStateGolden(t *testing.T) {
	dir := t.TempDir()
	if err := saveState(dir, slices.Clone(goldenState)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "state", "good-v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("state file format changed (update the version, keep reading the old one, then testdata):\n%s\nwant\n%s", got, want)
	}
	v1, err := os.ReadFile(filepath.Join("testdata", "state", "good-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	devs, err := decodeState(v1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []servedDevice{goldenState[0], {Name: "debian-12.img", ID: 7, Queues: 1, Depth: 4096, LBS: 4096}}; !reflect.DeepEqual(devs, want) {
		t.Fatalf("version 1 file: %+v, want %+v", devs, want)
	}
}

// saveState and loadState agree, through the file.
func TestSaveLoadState(t *testing.T) {
	dir := t.TempDir()
	a := servedDevice{Name: "a", ID: 1, Queues: 1, Depth: 128, LBS: 512}
	b := servedDevice{Name: "b", ID: 3, Queues: 2, Depth: 64, LBS: 4096, ReadOnly: true}
	c := servedDevice{Name: "b@s", ID: 4, Queues: 1, Depth: 128, LBS: 512, ReadOnly: true}
	if err := saveState(dir, []servedDevice{c, b, a}); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []servedDevice{a, b, c}; !reflect.DeepEqual(got, want) { // saved by id
		t.Fatalf("loaded %+v, want %+v", got, want)
	}
	if got, err := loadState(t.TempDir()); got != nil || err != nil {
		t.Fatalf("no state file: %+v %v", got, err)
	}
}

func checkStateRoundTrip(t *testing.T, devs []servedDevice) {
	t.Helper()
	for _, d := range devs {
		if err := d.check(); err != nil || d.ID < 0 {
			t.Fatalf("decoded an entry out of range: %+v (%v)", d, err)
		}
	}
	b, err := json.Marshal(stateFile{Version: stateVersion, Devices: devs})
	if err != nil {
		t.Fatal(err)
	}
	again, err := decodeState(b)
	if err != nil || len(again) != len(devs) || (len(devs) > 0 && !reflect.DeepEqual(again, devs)) {
		t.Fatalf("round trip: %+v %v, want %+v", again, err, devs)
	}
}

// decodeState never panics; what it accepts is in range and round-trips.
func FuzzDecodeState(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "state", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		devs, err := decodeState(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		checkStateRoundTrip(t, devs)
	})
}

// NotServed refuses exactly the volumes the state file lists.
func TestNotServed(t *testing.T) {
	dir := t.TempDir()
	if err := NotServed(dir, "a"); err != nil {
		t.Fatalf("no state file: %v", err)
	}
	if err := saveState(dir, []servedDevice{{Name: "a", ID: 2, Queues: 1, Depth: 128, LBS: 512},
		{Name: "b@s", ID: 3, Queues: 1, Depth: 128, LBS: 512, ReadOnly: true}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		names []string
		want  string // "" : allowed
	}{
		{[]string{"a"}, "blockhash del a --keep-data"},
		{[]string{"b"}, ""},
		{[]string{"b", "b@s"}, "blockhash del b@s --keep-data"},
		{[]string{"c", "a@s"}, ""},
	}
	for _, tc := range tests {
		err := NotServed(dir, tc.names...)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.names, err)
			}
			continue
		}
		if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want ErrInUse with %q", tc.names, err, tc.want)
		}
	}
	os.WriteFile(filepath.Join(dir, stateName), []byte("{"), 0o600)
	if err := NotServed(dir, "x"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged state file: %v", err)
	}
}
