package daemon

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockhash/engine"
)

// The JSON of `blockhash list --json` is testdata/list.json: every kind
// of row, served and not. Scripts parse it: a change to it is deliberate
// (the README's list row says what it holds).
func TestListEntriesGolden(t *testing.T) {
	created := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	s := engine.Stats{
		Devices: []engine.DeviceStats{
			{Name: "vm", ID: 1, Kind: "device", LogicalBytes: 1 << 20, Blocks: 256, DataBlocks: 200, ZeroBlocks: 56,
				UniqueBlocks: 20, SharedBlocks: 180, Created: created},
			{Name: "vm@s1", ID: 2, Kind: "snapshot", LogicalBytes: 1 << 20, Blocks: 256, DataBlocks: 190, ZeroBlocks: 66,
				UniqueBlocks: 10, SharedBlocks: 180, UsedBlocks: 9, Created: created},
			{Name: "vm2", ID: 3, Kind: "device", LogicalBytes: 1 << 20, Blocks: 256, DataBlocks: 191, ZeroBlocks: 65,
				UniqueBlocks: 1, SharedBlocks: 190, LostBlocks: 1, Origin: "vm@s1", Domain: "tenant-a", Created: created},
		},
		OfflineDevices: []string{"broken"},
		Receiving:      []engine.ReceivingVolume{{Device: "incoming", DataBlocks: 12, Size: 1 << 20}},
		Deleting:       []engine.DeletingVolume{{Name: "old", TablesLeft: 1, Tables: 2}},
	}
	served := []DeviceInfo{
		{ID: 0, Name: "vm", Size: 1 << 20, Path: "/dev/ublkb0", State: "running", Queues: 2, Depth: 128, LBS: 512, Paused: true},
		{ID: 1, Name: "vm@s1", Size: 1 << 20, Path: "/dev/ublkb1", State: "running", Queues: 1, Depth: 64, LBS: 4096, ReadOnly: true},
		{ID: 5, Name: "gone", State: "offline", Queues: 1, Depth: 64, LBS: 512},
	}
	got, err := json.MarshalIndent(ListEntries(s, served), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	want, err := os.ReadFile(filepath.Join("testdata", "list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("list --json changed (scripts parse it: change testdata/list.json and the README deliberately):\n%s\nwant\n%s", got, want)
	}
}

// Without a daemon, the devices its state file lists are shown as it
// will serve them, and nothing else is served; with no state file,
// nothing is.
func TestStoreList(t *testing.T) {
	dir := t.TempDir()
	s := engine.Stats{Devices: []engine.DeviceStats{{Name: "a", ID: 1, Kind: "device"}, {Name: "b", ID: 2, Kind: "device"}}}
	ents, err := StoreList(dir, s)
	if err != nil || len(ents) != 2 || ents[0].Served != nil || ents[1].Served != nil {
		t.Fatalf("no state file: %+v %v", ents, err)
	}
	if err := saveState(dir, []servedDevice{{Name: "b", ID: 7, Queues: 1, Depth: 64, LBS: 4096, ReadOnly: true}}); err != nil {
		t.Fatal(err)
	}
	ents, err = StoreList(dir, s)
	want := Served{Path: "/dev/ublkb7", ID: 7, State: StateDaemonStopped, Queues: 1, Depth: 64, LBS: 4096, ReadOnly: true}
	if err != nil || len(ents) != 2 || ents[0].Served != nil || ents[1].Served == nil || *ents[1].Served != want {
		t.Fatalf("b in the state file: %+v %v", ents, err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateName), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, err = StoreList(dir, s)
	if !errors.Is(err, ErrCorrupt) || len(ents) != 2 || ents[0].Served != nil || ents[1].Served != nil {
		t.Fatalf("a damaged state file: %+v %v, want the volumes, none served, and ErrCorrupt", ents, err)
	}
}
