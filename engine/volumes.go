package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The catalog's operations: devices, snapshots and clones. Creating a
// device writes its volume file at once (an empty device); snapshot,
// clone, rollback and delete change several volumes together, so each is
// one journaled commit (commitWith): a crash leaves the old state or the
// new one. A snapshot or clone shares its source's tables (one pointer per
// tableBlocks blocks is copied); deleting a volume marks it first (one
// commit), then releases its tables one at a time, each in a commit of its
// own, so memory and journal stay bounded; a deletion interrupted by a
// crash resumes at the next open.

// SplitName splits "dev@snap" into its device and snapshot names (snap is
// "" for a device).
func SplitName(name string) (dev, snap string) {
	dev, snap, _ = strings.Cut(name, "@")
	return dev, snap
}

// CreateOptions qualify CreateDevice.
type CreateOptions struct {
	// Domain puts the device in a dedup domain (domains.go), made if no
	// volume names it yet: its blocks are shared only with the devices of
	// the same domain. "" or DefaultDomain: the store's default domain.
	Domain string
}

// CreateDevice makes a new, all-zero device.
func (e *Engine) CreateDevice(name string, size int64, opts ...CreateOptions) (*Device, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	var o CreateOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Domain == DefaultDomain {
		o.Domain = ""
	}
	if size <= 0 || size%BlockSize != 0 {
		return nil, fmt.Errorf("%w: device size %d must be a positive multiple of 4096", ErrInvalid, size)
	}
	if size > maxDeviceSize {
		return nil, fmt.Errorf("%w: device size %d is larger than %d bytes", ErrInvalid, size, int64(maxDeviceSize))
	}
	if err := e.failedErr(); err != nil {
		return nil, err
	}
	h := mapHeader{Size: size, Name: name, Kind: kindDevice}
	if o.Domain != "" {
		e.devMu.RLock()
		_, exists := e.byName[name]
		e.devMu.RUnlock()
		if exists {
			return nil, fmt.Errorf("%w: %s", ErrExists, name) // before a domain is made for nothing
		}
		kr, err := e.doms.create(o.Domain)
		if err != nil {
			return nil, err
		}
		h.Domain, h.Secret = kr.domain, kr.secret
	}
	m, err := e.createVolume(h)
	if err != nil {
		return nil, err
	}
	return &Device{e: e, m: m}, nil
}

// createVolume makes an empty volume with header h (its ID and creation
// time filled in), written at once (nothing shares it, so it needs no
// journal: a crash before the next commit leaves an empty volume).
func (e *Engine) createVolume(h mapHeader) (*Map, error) {
	e.devMu.Lock()
	defer e.devMu.Unlock()
	if _, ok := e.byName[h.Name]; ok {
		return nil, fmt.Errorf("%w: %s", ErrExists, h.Name)
	}
	h.ID, h.Created = e.nextID, time.Now()
	path := volPath(e.dir, h.ID)
	if err := writeVolume(e.fs, path, encodeVolume(h, make([]uint32, h.roots()))); err != nil {
		return nil, err
	}
	if err := e.fs.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	m, err := openMap(e.fs, path, e.pages, false)
	if err != nil {
		return nil, err
	}
	m.root = make([]uint32, h.roots())
	e.nextID++
	e.byName[h.Name], e.byID[h.ID] = m, m
	return m, nil
}

// maxDeviceSize bounds a device: 4 PiB (a volume file of 48 MiB of root).
const maxDeviceSize = 1 << 52

// Snapshot makes snap, a read-only, point-in-time image of device dev:
// every write completed before the call is in it. Writers pause while the
// commit that takes it runs.
func (e *Engine) Snapshot(dev, snap string) error {
	if err := ValidName(snap); err != nil {
		return err
	}
	return e.share(dev, dev+"@"+snap, kindSnapshot)
}

// Clone makes dst, a new writable device sharing every block of src (a
// device, or a snapshot "dev@snap"). The clone is independent of its
// source from then on.
func (e *Engine) Clone(src, dst string) error {
	if err := ValidName(dst); err != nil {
		return err
	}
	return e.share(src, dst, kindDevice)
}

// share makes volume name of the given kind from src's current content.
// A snapshot gets a new GUID.
func (e *Engine) share(src, name string, kind uint8) error {
	h := mapHeader{Name: name, Kind: kind}
	if kind == kindSnapshot {
		h.GUID = newGUID()
	}
	_, err := e.shareAs(src, h, nil)
	return err
}

// shareAs makes a volume from src's current content with header h (its
// ID, size and creation time are filled in; h.Name is the full name, as
// in byName). check, if set, runs first under the catalog's lock. An
// ordinary commit first makes the one that holds writers off short.
func (e *Engine) shareAs(src string, h mapHeader, check func() error) (*Map, error) {
	if err := e.failedErr(); err != nil {
		return nil, err
	}
	if err := e.commit(); err != nil {
		return nil, err
	}
	var m *Map
	err := e.commitWith(func(rec *record) error {
		e.devMu.Lock()
		defer e.devMu.Unlock()
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		s, ok := e.byName[src]
		if !ok {
			return fmt.Errorf("%w: %s", ErrNotFound, src)
		}
		name := h.Name
		if _, ok := e.byName[name]; ok {
			return fmt.Errorf("%w: %s", ErrExists, name)
		}
		dev, snap := SplitName(name)
		h.ID, h.Size, h.Created = e.nextID, s.hdr.Size, time.Now()
		h.Domain, h.Secret = s.hdr.Domain, s.hdr.Secret
		if h.Kind == kindSnapshot {
			h.Name, h.Parent = snap, s.hdr.ID
			if _, isSnap := SplitName(src); isSnap != "" || dev != src {
				return fmt.Errorf("%w: a snapshot is taken of a device, not of %s", ErrInvalid, src)
			}
		} else {
			h.Origin = s.full
		}
		m = e.addShared(rec, s, h, name)
		return nil
	})
	return m, err
}

// addShared adds volume h, called name, sharing s's tree, to the catalog
// and to rec. The caller holds devMu and runs in a commit.
func (e *Engine) addShared(rec *record, s *Map, h mapHeader, name string) *Map {
	root := e.shareRoot(s)
	rec.Vols = append(rec.Vols, volWrite{ID: h.ID, Content: encodeVolume(h, root)})
	m := newMap(h, volPath(e.dir, h.ID), nil, e.pages)
	m.full = name
	m.root = root
	m.mapped.Store(s.mapped.Load())
	m.lost.Store(s.lost.Load())
	e.nextID = max(e.nextID, h.ID+1)
	e.byName[name], e.byID[h.ID] = m, m
	return m
}

// Rollback returns device dev to its snapshot snap. The device's current
// content is released in the background. The caller makes sure no one
// uses the device (the daemon refuses while it is served).
func (e *Engine) Rollback(dev, snap string) error {
	if err := e.failedErr(); err != nil {
		return err
	}
	if err := e.commit(); err != nil {
		return err
	}
	var old *Map
	err := e.commitWith(func(rec *record) error {
		e.devMu.Lock()
		defer e.devMu.Unlock()
		d, ok := e.byName[dev]
		if !ok || d.hdr.Kind != kindDevice {
			return fmt.Errorf("%w: device %s", ErrNotFound, dev)
		}
		s, ok := e.byName[dev+"@"+snap]
		if !ok {
			return fmt.Errorf("%w: snapshot %s@%s", ErrNotFound, dev, snap)
		}
		// The device's current tree moves to a hidden volume being deleted.
		oh := d.hdr
		oh.ID, oh.Deleting, oh.Name = e.nextID, true, fmt.Sprintf("rollback-%d", d.hdr.ID)
		e.nextID++
		e.pages.mu.Lock()
		oldRoot := d.root
		e.pages.mu.Unlock()
		root := e.shareRoot(s)
		e.pages.mu.Lock()
		d.root = root
		clear(d.rootDirty)
		// The device takes the snapshot's size too (it may have grown
		// since).
		d.hdr.Size, d.blocks = s.hdr.Size, s.blocks
		e.pages.mu.Unlock()
		d.mapped.Store(s.mapped.Load())
		d.lost.Store(s.lost.Load())
		rec.Vols = append(rec.Vols,
			volWrite{ID: oh.ID, Content: encodeVolume(oh, oldRoot)},
			volWrite{ID: d.hdr.ID, Content: encodeVolume(d.hdr, root)})
		old = newMap(oh, volPath(e.dir, oh.ID), nil, e.pages)
		old.full = oh.Name
		old.root = oldRoot
		old.deleted.Store(true)
		e.byID[oh.ID] = old
		return nil
	})
	if err != nil {
		return err
	}
	e.startDelete(old)
	return nil
}

// DeleteOptions qualify DeleteDevice.
type DeleteOptions struct {
	// Recursive deletes a device's snapshots with it (without it, a
	// device that has snapshots is refused).
	Recursive bool
	// Wait returns once the space is released (else it is released in
	// the background, and resumed at the next open if interrupted).
	Wait bool
}

// DeleteDevice removes a device (or a snapshot, "dev@snap") and releases
// what only it held. It returns once the deletion is committed (and with
// Wait, once the space is released).
func (e *Engine) DeleteDevice(name string, opts ...DeleteOptions) error {
	o := DeleteOptions{Wait: true}
	if len(opts) > 0 {
		o = opts[0]
	}
	if err := e.failedErr(); err != nil {
		return err
	}
	e.devMu.RLock()
	m, ok := e.byName[name]
	var snaps []*Map
	if ok && m.hdr.Kind == kindDevice {
		for _, s := range e.byName {
			if s.hdr.Kind == kindSnapshot && s.hdr.Parent == m.hdr.ID {
				snaps = append(snaps, s)
			}
		}
	}
	e.devMu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if len(snaps) > 0 && !o.Recursive {
		return fmt.Errorf("%w: device %s has %d snapshots (delete them first, or delete with the recursive option)", ErrBusy, name, len(snaps))
	}
	vols := append(snaps, m)
	// Writes of the device stop here; what they left is committed with
	// the mark, so the volume's tree is whole in the page file.
	e.epoch.Lock()
	e.devMu.Lock()
	for _, v := range vols {
		if e.byName[v.full] == v {
			delete(e.byName, v.full)
		}
		v.deleted.Store(true)
	}
	e.devMu.Unlock()
	e.epoch.Unlock()
	err := e.commitWith(func(rec *record) error {
		for _, v := range vols {
			v.hdr.Deleting = true
			e.pages.mu.RLock()
			root := v.root
			rec.Vols = append(rec.Vols, volWrite{ID: v.hdr.ID, Content: encodeVolume(v.hdr, root)})
			e.pages.mu.RUnlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, v := range vols {
		if o.Wait {
			if err := e.teardown(v); err != nil {
				return err
			}
		} else {
			e.startDelete(v)
		}
	}
	return nil
}

// startDelete releases a deleted volume's space in the background.
func (e *Engine) startDelete(m *Map) {
	e.deleters.Add(1)
	go func() {
		defer e.deleters.Done()
		if err := e.teardown(m); err != nil && !errors.Is(err, ErrClosed) {
			e.log.Error().Err(err).Str("volume", m.full).Msg("releasing a deleted volume's space failed (it resumes at the next open)")
		}
	}()
}

// teardown releases a deleted volume's tables one commit at a time, then
// removes its file. Progress shows in Stats (DeletingBlocks).
func (e *Engine) teardown(m *Map) error {
	m.teardownMu.Lock()
	defer m.teardownMu.Unlock()
	for t := range m.hdr.roots() {
		// An exclusive table's leaves go a batch at a time, each batch's
		// pointers and releases in one epoch (so in one commit), which
		// holds a commit back for one batch only; then the table. A
		// table shared when its leaves were looked at may be this
		// volume's alone by the time it goes: then its leaves go first.
		for again := true; again; {
			for done := false; !done; {
				if e.closing.Load() {
					return ErrClosed
				}
				e.epoch.RLock()
				n, d, err := e.dropLeaves(m, t, teardownBatch)
				e.epoch.RUnlock()
				done = d
				if err != nil {
					e.fail(err)
					return err
				}
				m.mapped.Add(-int64(n))
				if n > 0 {
					if err := e.commit(); err != nil {
						return err
					}
				}
			}
			if teardownHook != nil {
				teardownHook(m, t)
			}
			e.epoch.RLock()
			var err error
			again, err = e.dropRoot(m, t)
			e.epoch.RUnlock()
			if err != nil {
				e.fail(err)
				return err
			}
		}
		if t == m.hdr.roots()-1 || t%64 == 63 {
			if err := e.commit(); err != nil {
				return err
			}
		}
	}
	err := e.commitWith(func(rec *record) error {
		rec.Removes = append(rec.Removes, m.hdr.ID)
		e.devMu.Lock()
		delete(e.byID, m.hdr.ID)
		e.devMu.Unlock()
		e.closeAfter = append(e.closeAfter, m)
		return nil
	})
	if err == nil {
		e.log.Info().Str("volume", m.full).Msg("deleted volume's space released")
	}
	return err
}

// teardownHook, set by tests, runs between a table's leaves and the
// table itself in teardown (where other holders may let go of it).
var teardownHook func(m *Map, t int)

// teardownBatch is how many leaves a delete releases per commit (up to
// 21,760 block references).
const teardownBatch = 256

// resumeDeletes restarts the release of volumes whose deletion a crash
// or a close interrupted.
func (e *Engine) resumeDeletes() {
	e.devMu.RLock()
	var todo []*Map
	for _, m := range e.byID {
		if m.hdr.Deleting {
			todo = append(todo, m)
		}
	}
	e.devMu.RUnlock()
	sort.Slice(todo, func(i, j int) bool { return todo[i].hdr.ID < todo[j].hdr.ID })
	for _, m := range todo {
		e.startDelete(m)
	}
}

// Diff lists the block ranges whose content differs between two volumes
// ("dev", "dev@snap"), in time proportional to the change: subtrees they
// share are skipped unread. Pending writes are committed first.
func (e *Engine) Diff(a, b string) ([]Range, error) {
	if !e.opts.ReadOnly {
		if err := e.commit(); err != nil {
			return nil, err
		}
	}
	e.devMu.RLock()
	ma, oka := e.byName[a]
	mb, okb := e.byName[b]
	e.devMu.RUnlock()
	if !oka {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, a)
	}
	if !okb {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, b)
	}
	// Holding reuseMu keeps pages from being reused while they are read.
	e.reuseMu.RLock()
	defer e.reuseMu.RUnlock()
	return e.diffMaps(ma, mb)
}
