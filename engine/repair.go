package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"blockhash/blockstore"
	"blockhash/index"
)

// Opening for repair (Options.Repair): a store must always open far enough
// for fsck --repair to rebuild what can be derived. Before the block store
// opens, extent files that are missing, short or not regular files are
// recreated (blockstore.RepairExtents); an index LevelDB that cannot be
// opened is moved aside and a fresh one started (fsck --repair refills it
// from the slot records); a journal that is not a regular file is moved
// aside. Each such act is logged at error level.

// damagedName is where a damaged file or directory is moved aside.
// A name already taken (a repair run twice within a millisecond, or cut
// short and run again) gets a counter.
func (e *Engine) damagedName(path string) string {
	base := path + ".damaged-" + time.Now().UTC().Format("20060102T150405.000")
	name := base
	for i := 2; ; i++ {
		if _, err := e.fs.Stat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}

// repairExtents runs before the block store opens, in repair mode.
func (e *Engine) repairExtents() error {
	done, err := blockstore.RepairExtentsFS(e.fs, filepath.Join(e.dir, "blocks"), e.sb.ExtentSize)
	for _, msg := range done {
		e.log.Error().Msg("repair: " + msg)
	}
	return err
}

// openIndex opens the index; in repair mode a damaged one is moved aside
// and replaced by an empty one.
func (e *Engine) openIndex() (*index.Index, error) {
	dir := filepath.Join(e.dir, "index")
	ix, err := index.Open(dir, e.indexOptions())
	if err == nil || !e.opts.Repair || errors.Is(err, index.ErrLocked) {
		if err != nil && !errors.Is(err, index.ErrLocked) {
			err = fmt.Errorf("%w (run blockhash fsck --repair to rebuild the index)", err)
		}
		return ix, err
	}
	aside := e.damagedName(dir)
	if rerr := e.fs.Rename(dir, aside); rerr != nil {
		return nil, fmt.Errorf("%w; moving it aside failed: %v", err, rerr)
	}
	e.log.Error().Err(err).Str("moved_to", aside).Msg("repair: index cannot be opened: moved aside, starting an empty one (fsck --repair rebuilds it from the slot records)")
	return index.Open(dir, e.indexOptions())
}

// openJournalRepair opens the journal; in repair mode one that is not a
// regular file is moved aside.
func (e *Engine) openJournalRepair() (*journal, error) {
	path := filepath.Join(e.dir, journalName)
	if e.opts.Repair {
		if st, err := e.fs.Stat(path); err == nil && st.IsDir {
			aside := e.damagedName(path)
			if err := e.fs.Rename(path, aside); err != nil {
				return nil, fmt.Errorf("engine: move journal aside: %w", err)
			}
			e.log.Error().Str("moved_to", aside).Msg("repair: journal was not a regular file: moved aside")
		}
	}
	return openJournal(e.fs, path, e.log)
}

// rebuildBrokenMaps brings back the devices whose maps could not be opened:
// a map whose header is damaged gets a new one (the name from the file
// name; the size from the old header when it agrees with the file's
// length, else from the length; an unused device id) and its entries are
// then checked like any other's. A map that cannot be rebuilt (not a
// regular file, too short to hold an entry) is moved aside: its device and
// the references it held are gone, and the report says so. The caller
// holds commitMu and the epoch.
func (e *Engine) rebuildBrokenMaps(rep *FsckReport, lost *rangeList) {
	e.devMu.Lock()
	broken := e.broken
	e.broken = nil
	e.devMu.Unlock()
	for _, b := range broken {
		m, err := e.rebuildMap(b)
		if err == nil {
			rep.MapsRebuilt++
			rep.problem("device %s: map header rebuilt (%v): device size %d bytes, id %d", b.Name, b.Err, m.hdr.Size, m.hdr.ID)
			e.log.Warn().Str("device", b.Name).Int64("size", m.hdr.Size).Msg("repair: map header rebuilt")
			continue
		}
		aside := e.damagedName(b.Path)
		if rerr := e.fs.Rename(b.Path, aside); rerr != nil {
			rep.problem("device %s: map cannot be rebuilt (%v) nor moved aside (%v)", b.Name, err, rerr)
			e.devMu.Lock()
			e.broken = append(e.broken, b)
			e.devMu.Unlock()
			continue
		}
		rep.MapsLost++
		lost.addRange(DamagedRange{Device: b.Name, Why: WhyMapLost})
		rep.problem("device %s: map cannot be rebuilt (%v): moved aside to %s; the device and its data are lost", b.Name, err, filepath.Base(aside))
		e.log.Error().Str("device", b.Name).Str("moved_to", aside).Err(err).Msg("repair: device map lost")
	}
}

func (e *Engine) rebuildMap(b BrokenDevice) (*Map, error) {
	var id uint32
	if _, err := fmt.Sscanf(filepath.Base(b.Path), "%d.vol", &id); err != nil || id == 0 {
		return nil, fmt.Errorf("%s is not a volume file name", b.Path)
	}
	st, err := e.fs.Stat(b.Path)
	if err != nil {
		return nil, err
	}
	if st.IsDir {
		return nil, fmt.Errorf("%s is not a regular file", b.Path)
	}
	pages := (st.Size - rootOffset) / mapPageSize
	if pages <= 0 {
		return nil, fmt.Errorf("%s is too short (%d bytes) to hold a root", b.Path, st.Size)
	}
	f, err := e.fs.OpenFile(b.Path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	old := make([]byte, mapHeaderSize)
	f.ReadAt(old, 0)
	h := salvageMapHeader(old, pages)
	h.ID = id
	h.Name = fmt.Sprintf("recovered-%d", id)
	if err := e.doms.adopt(h.Domain, h.Secret); err != nil {
		// Another secret: the domain field was damaged too. The default
		// domain then (its writes share with the default's; fsck still
		// checks the old blocks against every domain's key).
		e.log.Warn().Err(err).Str("volume", b.Path).Msg("recovered volume put in the default dedup domain")
		h.Domain, h.Secret = "", [SecretSize]byte{}
	}
	e.devMu.Lock()
	defer e.devMu.Unlock()
	if _, taken := e.byName[h.Name]; taken {
		f.Close()
		return nil, fmt.Errorf("device name %s is taken", h.Name)
	}
	if _, taken := e.byID[h.ID]; taken {
		f.Close()
		return nil, fmt.Errorf("volume id %d is taken", h.ID)
	}
	hb := h.encode()
	if _, err := f.WriteAt(append(hb, hb...), 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	m := newMap(h, b.Path, f, e.pages)
	e.byName[m.full], e.byID[h.ID] = m, m
	e.nextID = max(e.nextID, h.ID+1)
	return m, nil
}

// salvageMapHeader makes a device header for a volume whose header and
// copy are both damaged: its size is the most blocks its root pages can
// name (the data is kept; the device may be larger than it was), its
// creation time the old one if that field looks sane.
func salvageMapHeader(b []byte, rootPages int64) mapHeader {
	h := mapHeader{Kind: kindDevice, Created: time.Now()}
	h.Size = rootPages * ptrsPerPage * tableBlocks * BlockSize
	if c := int64(binary.LittleEndian.Uint64(b[24:])); [8]byte(b[:8]) == mapMagic && c > 0 {
		h.Created = time.Unix(0, c)
	}
	// The dedup domain, if its fields read as one: its blocks keep
	// sharing with their domain (an unknown secret is checked at adopt).
	if dn := int(b[354]); [8]byte(b[:8]) == mapMagic && dn > 0 && dn <= maxNameLen && ValidName(string(b[355:355+dn])) == nil {
		h.Domain, h.Secret = string(b[355:355+dn]), [SecretSize]byte(b[419:419+SecretSize])
	}
	return h
}

// reloadSlots rebuilds the in-memory slot state (reference counts, free
// slots, unindexed and damaged sets) from the slot records after a repair
// rewrote them. The caller holds commitMu and the epoch.
func (e *Engine) reloadSlots() error {
	e.reuseMu.Lock()
	defer e.reuseMu.Unlock()
	if err := e.slots.reload(e.opts.Repair || e.opts.Check); err != nil {
		return err
	}
	return e.ix.Reload()
}

// replaceIndex moves a damaged index aside and starts an empty one (fsck
// --repair then refills it). The caller holds commitMu and the epoch.
func (e *Engine) replaceIndex(cause error) error {
	dir := filepath.Join(e.dir, "index")
	e.ix.Close()
	aside := e.damagedName(dir)
	if err := e.fs.Rename(dir, aside); err != nil {
		return fmt.Errorf("%w; moving it aside failed: %v", cause, err)
	}
	e.log.Error().Err(cause).Str("moved_to", aside).Msg("repair: index is damaged: moved aside, rebuilding it from the slot records")
	ix, err := index.Open(dir, e.indexOptions())
	if err != nil {
		return err
	}
	e.ix = ix
	return nil
}

// rebuildMapsAtOpen rebuilds damaged map headers in repair mode before the
// journal replay, which may name their devices (a header whose id field
// survived keeps its id, so the replay finds it). Maps it cannot rebuild
// stay broken: Fsck moves them aside.
func (e *Engine) rebuildMapsAtOpen() {
	broken := e.broken
	e.broken = nil
	for _, b := range broken {
		m, err := e.rebuildMap(b)
		if err != nil {
			e.broken = append(e.broken, b)
			continue
		}
		msg := fmt.Sprintf("device %s: map header rebuilt (%v): device size %d bytes, id %d", b.Name, b.Err, m.hdr.Size, m.hdr.ID)
		e.rebuilt = append(e.rebuilt, msg)
		e.log.Warn().Msg("repair: " + msg)
	}
}

// brokenNames lists the maps left out at open, for messages.
func (e *Engine) brokenNames() string {
	if len(e.broken) == 0 {
		return "no map is damaged"
	}
	names := make([]string, len(e.broken))
	for i, b := range e.broken {
		names[i] = filepath.Base(b.Path)
	}
	return "damaged maps: " + strings.Join(names, ", ")
}
