package engine

import (
	"fmt"
	"hash/crc32"

	"blockhash/blockstore"
)

// read fills p from the device at off. Blocks stored in consecutive slots
// are read with one call; every block is checked against its CRC-32C.
func (e *Engine) read(m *Map, p []byte, off int64) error {
	n := int64(len(p))
	if err := e.checkRange(m, off, n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	// Holding reuseMu shared keeps every slot we look up from being reused
	// before we have read it: a concurrent overwrite leaves us the old
	// content, never another block's.
	e.reuseMu.RLock()
	defer e.reuseMu.RUnlock()
	first, last := off/BlockSize, (off+n-1)/BlockSize
	ents := make([]mapEntry, last-first+1)
	if err := m.getRange(uint64(first), ents); err != nil {
		return err
	}
	for i := 0; i < len(ents); {
		b := first + int64(i)
		if ents[i].isZero() {
			lo, hi := max(off, b*BlockSize), min(off+n, (b+1)*BlockSize)
			clear(p[lo-off : hi-off])
			i++
			continue
		}
		if ents[i].isLost() {
			return fmt.Errorf("%w: device %s block %d is quarantined: its map entry was damaged and its data is lost (write it again; blockhash fsck lists such blocks)", ErrCorrupt, m.full, b)
		}
		j := i + 1
		for j < len(ents) && ents[j].holds() && ents[j].Slot == ents[j-1].Slot+1 {
			j++
		}
		if err := e.readRun(m, p, off, b, ents[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// readRun reads device blocks start.. (whose entries ents name consecutive
// slots) into the part of p they overlap; p holds device bytes from off.
func (e *Engine) readRun(m *Map, p []byte, off, start int64, ents []mapEntry) error {
	runOff := start * BlockSize
	runEnd := runOff + int64(len(ents))*BlockSize
	lo, hi := max(off, runOff), min(off+int64(len(p)), runEnd)
	aligned := lo == runOff && hi == runEnd
	buf := p[lo-off : hi-off]
	if !aligned {
		buf = make([]byte, runEnd-runOff)
	}
	if err := e.bs.ReadAt(buf, blockstore.Slot(ents[0].Slot)); err != nil {
		return err
	}
	for i, ent := range ents {
		if crc32.Checksum(buf[i*BlockSize:(i+1)*BlockSize], castagnoli) != ent.Key.CRC {
			e.markDamaged(ent.Slot, ent.Key)
			return fmt.Errorf("%w: device %s block %d (slot %d) fails its checksum", ErrCorrupt, m.full, start+int64(i), ent.Slot)
		}
	}
	if !aligned {
		copy(p[lo-off:hi-off], buf[lo-runOff:hi-runOff])
	}
	return nil
}

// readSlot reads the block ent names into buf (4 KiB), checking its CRC.
func (e *Engine) readSlot(buf []byte, ent mapEntry) error {
	if ent.isLost() {
		return fmt.Errorf("%w: block is quarantined (damaged map entry)", ErrCorrupt)
	}
	if err := e.bs.ReadAt(buf, blockstore.Slot(ent.Slot)); err != nil {
		return err
	}
	if crc32.Checksum(buf, castagnoli) != ent.Key.CRC {
		e.markDamaged(ent.Slot, ent.Key)
		return fmt.Errorf("%w: slot %d fails its checksum", ErrCorrupt, ent.Slot)
	}
	return nil
}
