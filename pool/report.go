package pool

// The reports of a pool's checks and collections: plain types, built
// without the rados tag, so the daemon's protocol carries them in every
// build.

// Report is a whole-pool check: the figures stats shows and the problems
// fsck reports.
type Report struct {
	Devices      int   `json:"devices"`
	LogicalBytes int64 `json:"logical_bytes"` // the devices' sizes
	MappedBlocks int64 `json:"mapped_blocks"` // non-zero blocks the maps name
	// LiveBlocks are the distinct stored blocks the maps name: what the
	// data takes once garbage is collected.
	LiveBlocks   int      `json:"live_blocks"`
	StoredBlocks int      `json:"stored_blocks"` // blocks in packs, garbage included
	Contents     int      `json:"contents"`      // distinct keys among them
	Packs        int      `json:"packs"`
	OpenPacks    int      `json:"open_packs"`
	IndexEntries int      `json:"index_entries"`
	Garbage      int      `json:"garbage_blocks"` // stored blocks nothing references (GC's)
	Hosts        []string `json:"hosts"`          // "name (id): state"
	Problems     []string `json:"problems,omitempty"`
}

// SavedPercent is the space dedup saves: 1 - live / mapped.
func (r Report) SavedPercent() float64 {
	if r.MappedBlocks == 0 {
		return 0
	}
	return 100 * (1 - float64(r.LiveBlocks)/float64(r.MappedBlocks))
}

// ScrubReport is what a scrub read.
type ScrubReport struct {
	Blocks  int64    `json:"blocks"` // mapped blocks read
	Bytes   int64    `json:"bytes"`
	Damaged []string `json:"damaged,omitempty"` // "device block N at LOC: why"
}

// Info is one device of the pool as List shows it.
type Info struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Holder string `json:"holder,omitempty"` // the host serving it ("" if none)
	// HolderState is the holder's recorded state ("live", "stopped",
	// "fenced"); a holder that is not live holds a lease it cannot use:
	// taking the device fences it.
	HolderState string `json:"holder_state,omitempty"`
}

// GCStats says what one garbage collection did (Pool.GC).
type GCStats struct {
	Candidates   int `json:"candidates"`    // unreferenced blocks of sealed packs at the first round
	Resurrected  int `json:"resurrected"`   // of them referenced again by the second round
	Dead         int `json:"dead"`          // blocks no host can name any more
	PacksDeleted int `json:"packs_deleted"` // packs all of whose blocks were dead
	Compacted    int `json:"compacted"`     // packs whose live blocks compaction copied
	Copied       int `json:"copied"`        // blocks it copied
}
