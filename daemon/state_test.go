package daemon

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
	want := map[string]int{"good.json": 2, "empty.json": 0} // device count
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

// saveState and loadState agree, through the file.
func TestSaveLoadState(t *testing.T) {
	dir := t.TempDir()
	a := servedDevice{Name: "a", ID: 1, Queues: 1, Depth: 128, LBS: 512}
	b := servedDevice{Name: "b", ID: 3, Queues: 2, Depth: 64, LBS: 4096}
	if err := saveState(dir, []servedDevice{b, a}); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []servedDevice{a, b}; !reflect.DeepEqual(got, want) { // saved by id
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
	b, err := json.Marshal(stateFile{Version: 1, Devices: devs})
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
