package ublk

import "sync/atomic"

// Stats counts the operations a backend served. A FUA write counts as a
// write and as a FUA write.
type Stats struct {
	Reads       uint64
	Writes      uint64
	Flushes     uint64
	Discards    uint64
	WriteZeroes uint64
	FUAWrites   uint64
}

// counters are the atomic operation counters shared by the package's
// backends; safe for concurrent use.
type counters struct {
	reads, writes, flushes, discards, writeZeroes, fuaWrites atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (c *counters) Stats() Stats {
	return Stats{
		Reads:       c.reads.Load(),
		Writes:      c.writes.Load(),
		Flushes:     c.flushes.Load(),
		Discards:    c.discards.Load(),
		WriteZeroes: c.writeZeroes.Load(),
		FUAWrites:   c.fuaWrites.Load(),
	}
}
