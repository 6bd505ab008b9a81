package engine

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"blockhash/index"
	"blockhash/vfs"
)

// DeviceStats describes one device.
type DeviceStats struct {
	Name         string `json:"name"`
	ID           uint32 `json:"id"`
	LogicalBytes int64  `json:"logical_bytes"`
	Blocks       uint64 `json:"blocks"`
	DataBlocks   uint64 `json:"data_blocks"` // blocks holding non-zero data
	ZeroBlocks   uint64 `json:"zero_blocks"` // unwritten or zero blocks: no space
	LostBlocks   uint64 `json:"lost_blocks"` // quarantined: map entry damaged, data lost
	Kind         string `json:"kind"`        // "device" or "snapshot" (read-only)
	// UsedBlocks (snapshots) is what deleting it would free: blocks only
	// it holds (see Engine.Used).
	UsedBlocks uint64 `json:"used_blocks,omitempty"`
	// UniqueBlocks are the data blocks whose stored block no other
	// volume references (several of them may share one stored block
	// within this volume); SharedBlocks are the rest of DataBlocks: their
	// stored block is referenced by another device, snapshot or clone as
	// well (zfs's "unique" and "shared"; see Engine.usage).
	UniqueBlocks uint64 `json:"unique_blocks"`
	SharedBlocks uint64 `json:"shared_blocks"`
	Origin       string `json:"origin,omitempty"` // a clone's source ("dev@snap")
	// Domain is the volume's dedup domain ("" for the store's default).
	Domain  string    `json:"domain,omitempty"`
	Created time.Time `json:"created"`
}

// DomainStats is dedup within one dedup domain: blocks are shared only
// between the volumes of a domain, so each domain's stored blocks are its
// own.
type DomainStats struct {
	Name    string `json:"name"` // DefaultDomain for the store's default
	Devices int    `json:"devices"`
	// DataBlocks hold non-zero data in the domain's devices (snapshots
	// not counted, as store-wide); StoredBlocks are the distinct stored
	// blocks its volumes reference, snapshots included.
	DataBlocks   uint64  `json:"data_blocks"`
	StoredBlocks uint64  `json:"stored_blocks"`
	SavedPercent float64 `json:"saved_percent"` // (data - stored) / data
}

// Stats describes the whole store.
type Stats struct {
	Devices         []DeviceStats `json:"devices"`
	LogicalBytes    int64         `json:"logical_bytes"`
	ZeroBlocks      uint64        `json:"zero_blocks"`
	DataBlocks      uint64        `json:"data_blocks"`      // non-zero blocks over all devices
	UniqueBlocks    uint64        `json:"unique_blocks"`    // blocks stored once
	DuplicateBlocks uint64        `json:"duplicate_blocks"` // data blocks that share a stored block
	StoredBytes     int64         `json:"stored_bytes"`     // block data on disk: unique blocks * 4096
	AllocatedBytes  int64         `json:"allocated_bytes"`  // preallocated extent space
	MetadataBytes   int64         `json:"metadata_bytes"`   // index, maps, slot records, journal, superblock
	// SavedPercent is what dedup saves of the data written: duplicate
	// blocks over data blocks (0 while no data is written). Unwritten and
	// zero blocks take no space either, but they are not counted as saved:
	// an empty device saves nothing.
	SavedPercent float64 `json:"saved_percent"`
	// DataBytes is the non-zero data the devices hold (data blocks x 4 KiB),
	// DedupSavedBytes the part of it stored once for several blocks.
	DataBytes       int64 `json:"data_bytes"`
	DedupSavedBytes int64 `json:"dedup_saved_bytes"`
	// FreeExtentBytes is the space allocated to extents and not holding a
	// block; UsePercent is stored over allocated.
	FreeExtentBytes int64    `json:"free_extent_bytes"`
	UsePercent      float64  `json:"use_percent"`
	Hash            string   `json:"hash"`
	IndexEntries    int      `json:"index_entries"`
	IndexRAMBytes   int      `json:"index_ram_bytes"`
	DamagedBlocks   uint64   `json:"damaged_blocks"`            // stored blocks known to fail their digest
	OfflineDevices  []string `json:"offline_devices,omitempty"` // devices whose maps cannot be opened
	// Deleting lists deleted volumes whose space is still being released.
	Deleting []DeletingVolume `json:"deleting,omitempty"`
	// Receiving lists receives under way or interrupted (receive.go).
	Receiving []ReceivingVolume `json:"receiving,omitempty"`
	// Domains is dedup per domain, when the store has domains other
	// than the default (Stats only; domains.go).
	Domains []DomainStats `json:"domains,omitempty"`
}

// Stats computes current figures, with what each volume shares and holds
// alone (usage.go: a walk of the map pages each volume does not share).
func (e *Engine) Stats() (Stats, error) {
	s, err := e.StoreStats()
	if err != nil {
		return s, err
	}
	// A volume deleted meanwhile, or whose pages cannot be read (fsck
	// tells), is left at zero.
	for i := range s.Devices {
		d := &s.Devices[i]
		e.devMu.RLock()
		m, ok := e.byName[d.Name]
		e.devMu.RUnlock()
		if !ok {
			continue
		}
		u, err := e.usage(m)
		if err != nil {
			continue
		}
		d.UniqueBlocks = min(u.unique, d.DataBlocks)
		d.SharedBlocks = d.DataBlocks - d.UniqueBlocks
		if d.Kind == "snapshot" {
			d.UsedBlocks = u.freed
		}
	}
	doms, err := e.domainStats(s)
	if err != nil {
		return s, err
	}
	s.Domains = doms
	return s, nil
}

// StoreStats is Stats without the walk of the volumes' maps: each
// volume's UniqueBlocks, SharedBlocks and UsedBlocks are left zero. Its
// cost does not grow with the data: for frequent callers (a metrics
// scrape).
func (e *Engine) StoreStats() (Stats, error) {
	s := Stats{Hash: e.sb.Hash.String()}
	e.devMu.RLock()
	for _, m := range e.byName {
		d := m.stats()
		// A receive's staging volume is no device yet: not listed, and
		// no logical space, but the blocks it holds count (they are
		// stored, and dedup figures compare them with what is).
		if hidden(m.full) {
			s.DataBlocks += d.DataBlocks
			continue
		}
		s.Devices = append(s.Devices, d)
		if m.readOnly() {
			continue // a snapshot's blocks are its device's, as they were
		}
		s.LogicalBytes += d.LogicalBytes
		s.ZeroBlocks += d.ZeroBlocks
		s.DataBlocks += d.DataBlocks
	}
	var mapBytes int64
	for _, m := range e.byID {
		st, _ := e.fs.Stat(m.path)
		b := st.Allocated
		mapBytes += b
	}
	for _, b := range e.broken {
		s.OfflineDevices = append(s.OfflineDevices, b.Name)
	}
	e.devMu.RUnlock()
	s.Deleting = e.Deleting()
	s.Receiving = e.Receiving()
	s.DamagedBlocks = uint64(max(0, e.slots.damagedCount()))
	sort.Slice(s.Devices, func(i, j int) bool { return s.Devices[i].Name < s.Devices[j].Name })
	s.UniqueBlocks = uint64(max(0, e.slots.uniqueCount()))
	if s.DataBlocks > s.UniqueBlocks {
		s.DuplicateBlocks = s.DataBlocks - s.UniqueBlocks
	}
	s.StoredBytes = int64(s.UniqueBlocks) * BlockSize
	u, err := e.bs.Usage()
	if err != nil {
		return s, err
	}
	s.AllocatedBytes = u.DataBytes
	ixBytes, err := dirBytes(e.fs, filepath.Join(e.dir, "index"))
	if err != nil {
		return s, err
	}
	other := int64(0)
	for _, n := range []string{superblockName, journalName, pagesName} {
		st, _ := e.fs.Stat(filepath.Join(e.dir, n))
		b := st.Allocated
		other += b
	}
	s.MetadataBytes = ixBytes + mapBytes + u.MetaBytes + other
	s.DataBytes = int64(s.DataBlocks) * BlockSize
	s.DedupSavedBytes = int64(s.DuplicateBlocks) * BlockSize
	if s.DataBytes > 0 {
		s.SavedPercent = 100 * float64(s.DedupSavedBytes) / float64(s.DataBytes)
	}
	s.FreeExtentBytes = max(0, s.AllocatedBytes-s.StoredBytes)
	if s.AllocatedBytes > 0 {
		s.UsePercent = 100 * float64(s.StoredBytes) / float64(s.AllocatedBytes)
	}
	is := e.ix.Stats()
	s.IndexEntries, s.IndexRAMBytes = is.Entries, is.FilterBytes
	return s, nil
}

// IndexStats exposes the index's counters.
func (e *Engine) IndexStats() index.Stats { return e.ix.Stats() }

// dirBytes is the space the files under dir occupy.
func dirBytes(fsys vfs.FS, dir string) (int64, error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("engine: %w", err)
	}
	var total int64
	for _, de := range ents {
		if de.IsDir {
			b, err := dirBytes(fsys, filepath.Join(dir, de.Name))
			if err != nil {
				return 0, err
			}
			total += b
			continue
		}
		total += de.Allocated
	}
	return total, nil
}

func (m *Map) stats() DeviceStats {
	mapped := uint64(max(0, m.mapped.Load()))
	kind := "device"
	if m.readOnly() {
		kind = "snapshot"
	}
	return DeviceStats{Name: m.full, Kind: kind, Origin: m.hdr.Origin, Domain: m.hdr.Domain, ID: m.hdr.ID, LogicalBytes: m.hdr.Size, Blocks: m.blocks,
		DataBlocks: mapped, ZeroBlocks: m.blocks - mapped, LostBlocks: uint64(max(0, m.lost.Load())), Created: m.hdr.Created}
}
