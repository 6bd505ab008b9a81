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
	"blockhash/engine"
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
	ids, names := map[int]bool{}, map[string]bool{}
	for _, d := range s.Devices {
		if err := d.check(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		if d.ID < 0 || ids[d.ID] || names[d.Name] {
			return nil, fmt.Errorf("%w: device %q with id %d listed twice or without an id", ErrCorrupt, d.Name, d.ID)
		}
		ids[d.ID], names[d.Name] = true, true
	}
	return s.Devices, nil
}

// maxDeviceID bounds device ids (the kernel's own limit is 1<<20).
const maxDeviceID = 1 << 20

// check reports settings out of range (ID -1 asks for any free id).
func (d servedDevice) check() error {
	if err := engine.ValidName(d.Name); err != nil {
		return err
	}
	switch {
	case d.ID < -1 || d.ID >= maxDeviceID:
		return fmt.Errorf("%w: device id %d (0..%d)", ErrInvalid, d.ID, maxDeviceID-1)
	case d.Queues < 1 || d.Queues > 64:
		return fmt.Errorf("%w: queues %d (1..64)", ErrInvalid, d.Queues)
	case d.Depth < 1 || d.Depth > 4096:
		return fmt.Errorf("%w: depth %d (1..4096)", ErrInvalid, d.Depth)
	case d.LBS != 512 && d.LBS != 4096:
		return fmt.Errorf("%w: logical block size %d (512 or 4096)", ErrInvalid, d.LBS)
	}
	return nil
}

func saveState(dir string, devs []servedDevice) error {
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
	b, err := json.MarshalIndent(stateFile{Version: 1, Devices: devs}, "", "  ")
	if err != nil {
		return err
	}
	return blockstore.WriteFileDurable(filepath.Join(dir, stateName), append(b, '\n'))
}
