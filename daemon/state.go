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

// stateVersion is the state file's format: version 2 added read_only
// (and names of snapshots, "dev@snap"). Version 1 files are read as they
// are (every device read-write).
const stateVersion = 2

// servedDevice is what the daemon remembers of a device it serves.
type servedDevice struct {
	Name     string `json:"name"` // a device, or a snapshot "dev@snap"
	ID       int    `json:"id"`
	Queues   int    `json:"queues"`
	Depth    int    `json:"depth"`
	LBS      int    `json:"logical_block_size"`
	ReadOnly bool   `json:"read_only,omitempty"`
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
	if s.Version != 1 && s.Version != stateVersion {
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
// defaulted fills what an add left unset (one queue, depth 128, 512-byte
// logical blocks) and checks the result.
func (d servedDevice) defaulted() (servedDevice, error) {
	if d.Queues == 0 {
		d.Queues = 1
	}
	if d.Depth == 0 {
		d.Depth = 128
	}
	if d.LBS == 0 {
		d.LBS = 512
	}
	return d, d.check()
}

func (d servedDevice) check() error {
	if err := validVolumeName(d.Name); err != nil {
		return err
	}
	switch {
	case isSnapshot(d.Name) && !d.ReadOnly:
		return fmt.Errorf("%w: snapshot %s served read-write", ErrInvalid, d.Name)
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
	b, err := json.MarshalIndent(stateFile{Version: stateVersion, Devices: devs}, "", "  ")
	if err != nil {
		return err
	}
	return blockstore.WriteFileDurable(filepath.Join(dir, stateName), append(b, '\n'))
}

// validVolumeName checks a device name or a snapshot's "dev@snap".
func validVolumeName(name string) error {
	dev, snap := engine.SplitName(name)
	if err := engine.ValidName(dev); err != nil {
		return err
	}
	if dev != name {
		if err := engine.ValidName(snap); err != nil {
			return err
		}
	}
	return nil
}

// isSnapshot tells whether name is a snapshot's, "dev@snap".
func isSnapshot(name string) bool {
	_, snap := engine.SplitName(name)
	return snap != ""
}

// NotServed fails with ErrInUse when the state file of the store in dir
// lists any of the named volumes: a daemon serves it, or brings it back
// at its next start (its kernel device may be waiting for it). Commands
// that change the store while no daemon runs call it before a rollback
// or a deletion.
func NotServed(dir string, names ...string) error {
	list, err := loadState(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		for _, s := range list {
			if s.Name == n {
				return fmt.Errorf("%w: %s is served as /dev/ublkb%d (the daemon brings it back when it starts): start blockhash serve and stop serving it with blockhash del %s --keep-data first", ErrInUse, n, s.ID, n)
			}
		}
	}
	return nil
}
