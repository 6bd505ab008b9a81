package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"blockhash/blockstore"
)

// stateName is the file in the store directory listing served devices.
const stateName = "served.json"

// servedDevice is what the daemon remembers of a device it serves.
type servedDevice struct {
	Name   string `json:"name"`
	ID     int    `json:"id"`
	Queues int    `json:"queues"`
	Depth  int    `json:"depth"`
	LBS    int    `json:"logical_block_size"`
}

type stateFile struct {
	Version int            `json:"version"`
	Devices []servedDevice `json:"devices"`
}

func loadState(dir string) ([]servedDevice, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeState(b)
}

func decodeState(b []byte) ([]servedDevice, error) {
	var s stateFile
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("%w: version %d", ErrCorrupt, s.Version)
	}
	seen := map[int]bool{}
	for _, d := range s.Devices {
		if d.Name == "" || d.ID < 0 || d.ID > 1<<20 || seen[d.ID] {
			return nil, fmt.Errorf("%w: bad entry %+v", ErrCorrupt, d)
		}
		seen[d.ID] = true
	}
	return s.Devices, nil
}

func saveState(dir string, devs []servedDevice) error {
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
	b, err := json.MarshalIndent(stateFile{Version: 1, Devices: devs}, "", "  ")
	if err != nil {
		return err
	}
	return blockstore.WriteFileDurable(filepath.Join(dir, stateName), append(b, '\n'))
}
