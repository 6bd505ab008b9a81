package daemon

import (
	"fmt"
	"path/filepath"
	"time"

	"blockhash/engine"
)

// ListEntry is one row of `blockhash list`, the same whether a daemon
// answers or the store is read directly: a volume of the store (a
// device, snapshot or clone; a receive under way; a deleted volume whose
// space is being released) with what the store knows of it, and Served,
// how it is served, nil when it is not.
type ListEntry struct {
	Name string `json:"name"`
	// Kind: device (a clone is one, with an Origin), snapshot,
	// receiving, deleting, or offline (listed by the store or the daemon,
	// but its map cannot be opened: blockhash fsck).
	Kind string `json:"kind"`
	// StoreID is the volume's number in the store (its map file,
	// devices/ID.vol); 0 for receiving, deleting and offline rows.
	StoreID uint32 `json:"store_id"`
	Size    int64  `json:"size"` // bytes
	// DataBlocks hold non-zero data; ZeroBlocks are unwritten or zero.
	DataBlocks uint64 `json:"data_blocks"`
	ZeroBlocks uint64 `json:"zero_blocks"`
	// UniqueBlocks are the data blocks whose stored block only this
	// volume references; SharedBlocks the rest (engine.DeviceStats).
	UniqueBlocks uint64 `json:"unique_blocks"`
	SharedBlocks uint64 `json:"shared_blocks"`
	// UsedBlocks (snapshots) is the stored blocks deleting it would free.
	UsedBlocks uint64 `json:"used_blocks"`
	LostBlocks uint64 `json:"lost_blocks"` // quarantined: data lost
	Origin     string `json:"origin"`      // a clone's source, "dev@snap"
	// Domain is the volume's dedup domain (engine.DefaultDomain for the
	// store's default; "" for receiving, deleting and offline rows).
	Domain string `json:"domain"`
	// Created is when the volume was made (zero for receiving, deleting
	// and offline rows).
	Created time.Time `json:"created"`
	// Progress tells what is left of a receive or a deletion.
	Progress string  `json:"progress"`
	Served   *Served `json:"served"`
}

// Served is how a volume is served: by the running daemon, or (State
// StateDaemonStopped) by the daemon once it starts, from its state file.
type Served struct {
	Path   string `json:"path"` // /dev/ublkbN ("" while no kernel device is up)
	ID     int    `json:"id"`   // the kernel device's number, N of /dev/ublkbN
	State  string `json:"state"`
	Queues int    `json:"queues"`
	Depth  int    `json:"depth"`
	LBS    int    `json:"logical_block_size"`
	// ReadOnly: writes fail with EROFS; Paused: I/O is held (pause).
	ReadOnly bool `json:"read_only"`
	Paused   bool `json:"paused"`
}

// StateDaemonStopped is the state of a device the state file lists while
// no daemon runs: the next daemon serves it again (taking over its kernel
// device where that survived). The other states are a DeviceInfo's:
// running, stopped (the daemon has it, its kernel device is not up) and
// offline (the daemon could not bring it back).
const StateDaemonStopped = "daemon-stopped"

// ListEntries makes the list from the store's figures and the daemon's
// served devices: the store's volumes in name order, then the served
// devices the store does not show, its offline volumes, the receives and
// the deletions.
func ListEntries(s engine.Stats, served []DeviceInfo) []ListEntry {
	byName := map[string]DeviceInfo{}
	for _, d := range served {
		byName[d.Name] = d
	}
	out := []ListEntry{}
	seen := map[string]bool{}
	for _, d := range s.Devices {
		e := ListEntry{Name: d.Name, Kind: d.Kind, StoreID: d.ID, Size: d.LogicalBytes,
			DataBlocks: d.DataBlocks, ZeroBlocks: d.ZeroBlocks, UniqueBlocks: d.UniqueBlocks, SharedBlocks: d.SharedBlocks,
			UsedBlocks: d.UsedBlocks, LostBlocks: d.LostBlocks, Origin: d.Origin, Domain: d.Domain, Created: d.Created}
		if e.Domain == "" {
			e.Domain = engine.DefaultDomain
		}
		if i, ok := byName[d.Name]; ok {
			e.Served = servedOf(i)
		}
		out = append(out, e)
		seen[d.Name] = true
	}
	for _, d := range served {
		if !seen[d.Name] {
			out = append(out, ListEntry{Name: d.Name, Kind: "offline", Size: d.Size, Served: servedOf(d)})
			seen[d.Name] = true
		}
	}
	for _, n := range s.OfflineDevices {
		if !seen[n] {
			out = append(out, ListEntry{Name: n, Kind: "offline"})
			seen[n] = true
		}
	}
	for _, v := range s.Receiving {
		out = append(out, ListEntry{Name: v.Device, Kind: "receiving", Size: v.Size, DataBlocks: uint64(max(0, v.DataBlocks)),
			Progress: "a receive under way or interrupted (rerun it to finish)"})
	}
	for _, v := range s.Deleting {
		out = append(out, ListEntry{Name: v.Name, Kind: "deleting",
			Progress: fmt.Sprintf("%d of %d map tables left", v.TablesLeft, v.Tables)})
	}
	return out
}

// StoreList is ListEntries while no daemon runs: the devices the state
// file of store lists are shown as the next daemon will serve them, in
// state StateDaemonStopped (a device it lists stays in use: deleting it
// or rolling it back is refused, so the list shows it). A state file that
// cannot be read is an error, with the list of the store's volumes
// (none served) still made.
func StoreList(store string, s engine.Stats) ([]ListEntry, error) {
	devs, err := loadState(store)
	if err != nil {
		return ListEntries(s, nil), fmt.Errorf("the daemon's state file %s: %w", filepath.Join(store, stateName), err)
	}
	served := make([]DeviceInfo, 0, len(devs))
	for _, d := range devs {
		i := DeviceInfo{ID: d.ID, Name: d.Name, State: StateDaemonStopped, Queues: d.Queues, Depth: d.Depth, LBS: d.LBS, ReadOnly: d.ReadOnly}
		if d.ID >= 0 {
			i.Path = fmt.Sprintf("/dev/ublkb%d", d.ID)
		}
		served = append(served, i)
	}
	return ListEntries(s, served), nil
}

func servedOf(d DeviceInfo) *Served {
	return &Served{Path: d.Path, ID: d.ID, State: d.State, Queues: d.Queues, Depth: d.Depth, LBS: d.LBS,
		ReadOnly: d.ReadOnly, Paused: d.Paused}
}
