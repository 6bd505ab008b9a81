package engine

import "fmt"

// Why a range of device blocks is damaged (DamagedRange.Why).
const (
	// WhyLostEntry: the block's map entry was damaged (it failed its
	// checksum or the map was cut short) and is quarantined.
	WhyLostEntry = "map entry damaged (quarantined)"
	// WhyDamagedData: the stored block the entry names fails its digest.
	WhyDamagedData = "stored block fails its digest"
	// WhyBeyondStore: the entry names a slot the store does not have.
	WhyBeyondStore = "names a slot beyond the store"
	// WhyOtherBlock: the slot the entry names holds another block.
	WhyOtherBlock = "slot holds another block"
	// WhyMapLost: the device's map could not be read or rebuilt.
	WhyMapLost = "device map lost"
)

// DamagedRange is a run of a device's blocks whose data is lost or
// damaged, the way `zpool status -v` lists damaged files. Blocks of 0
// means the whole device.
type DamagedRange struct {
	Device   string `json:"device"`
	FirstLBA uint64 `json:"first_lba"` // in 4 KiB blocks
	Blocks   uint64 `json:"blocks"`
	Why      string `json:"why"`
}

func (r DamagedRange) String() string {
	if r.Blocks == 0 {
		return fmt.Sprintf("device %s: all blocks: %s", r.Device, r.Why)
	}
	if r.Blocks == 1 {
		return fmt.Sprintf("device %s block %d: %s", r.Device, r.FirstLBA, r.Why)
	}
	return fmt.Sprintf("device %s blocks %d-%d (%d): %s", r.Device, r.FirstLBA, r.FirstLBA+r.Blocks-1, r.Blocks, r.Why)
}

// maxRanges bounds a report's list of damaged ranges.
const maxRanges = 10000

// rangeList collects damaged blocks into ranges: consecutive blocks of one
// device with one cause are merged. Blocks must come in increasing LBA
// order per device (as map scans give them) to merge.
type rangeList struct {
	ranges    []DamagedRange
	blocks    uint64 // damaged blocks counted, listed or not
	truncated bool
}

func (l *rangeList) add(dev string, lba uint64, why string) {
	l.blocks++
	if n := len(l.ranges); n > 0 {
		r := &l.ranges[n-1]
		if r.Device == dev && r.Why == why && r.Blocks > 0 && r.FirstLBA+r.Blocks == lba {
			r.Blocks++
			return
		}
	}
	l.addRange(DamagedRange{Device: dev, FirstLBA: lba, Blocks: 1, Why: why})
}

func (l *rangeList) addRange(r DamagedRange) {
	if len(l.ranges) >= maxRanges {
		l.truncated = true
		return
	}
	l.ranges = append(l.ranges, r)
}
