package engine

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// The device catalog: the open devices by name and id, the devices left
// out at open because their maps are damaged, and creating, finding,
// listing and deleting devices. devMu guards it (see Engine).

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidName checks a device name.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: device name %q (use 1-64 letters, digits, '.', '_', '-')", ErrInvalid, name)
	}
	return nil
}

// openMaps opens every volume file (header only). A volume that cannot
// be opened (damaged header, a name or id used twice) is left out and
// reported, so one damaged device does not take the others offline.
func (e *Engine) openMaps() error {
	dir := filepath.Join(e.dir, "devices")
	if !e.opts.ReadOnly {
		if err := e.fs.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	}
	ents, err := e.fs.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	var vols []*Map
	for _, de := range ents {
		name := de.Name
		if strings.HasSuffix(name, ".tmp") {
			if !e.opts.ReadOnly {
				e.fs.Remove(filepath.Join(dir, name)) // a create that did not finish
			}
			continue
		}
		if strings.HasSuffix(name, ".map") {
			// A format-1 map left by an upgrade that reached its commit
			// point (the new superblock) before removing it.
			if !e.opts.ReadOnly {
				e.log.Info().Str("file", name).Msg("removing a format-1 map the upgrade left behind")
				e.fs.Remove(filepath.Join(dir, name))
			}
			continue
		}
		if !strings.HasSuffix(name, ".vol") {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := openMap(e.fs, path, e.pages, e.opts.ReadOnly)
		if err == nil && fmt.Sprintf("%d.vol", m.hdr.ID) != name {
			m.close()
			err = fmt.Errorf("%s: %w: the file holds volume %d", path, ErrCorrupt, m.hdr.ID)
		}
		if err != nil {
			e.log.Error().Err(err).Msg("volume cannot be opened: the device is offline (run blockhash fsck --repair)")
			e.broken = append(e.broken, BrokenDevice{Name: strings.TrimSuffix(name, ".vol"), Path: path, Err: err, Unnamed: true})
			continue
		}
		vols = append(vols, m)
		e.byID[m.hdr.ID] = m
		e.nextID = max(e.nextID, m.hdr.ID+1)
	}
	// Names: a snapshot is "device@name".
	for _, m := range vols {
		if m.hdr.Kind == kindSnapshot {
			p := e.byID[m.hdr.Parent]
			if p == nil || p.hdr.Kind != kindDevice {
				m.full = fmt.Sprintf("%d@%s", m.hdr.Parent, m.hdr.Name)
				if !m.hdr.Deleting {
					e.log.Error().Str("snapshot", m.hdr.Name).Uint32("device_id", m.hdr.Parent).Msg("snapshot of a device that cannot be opened")
				}
			} else {
				m.full = p.hdr.Name + "@" + m.hdr.Name
			}
		}
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].hdr.ID < vols[j].hdr.ID })
	for _, m := range vols {
		// The lowest-numbered volume of a domain gives its secret.
		derr := e.doms.adopt(m.hdr.Domain, m.hdr.Secret)
		if m.hdr.Deleting {
			m.deleted.Store(true)
			continue
		}
		if derr != nil {
			err := fmt.Errorf("%s: %w", m.path, derr)
			e.log.Error().Err(err).Msg("volume cannot be opened: the device is offline")
			e.broken = append(e.broken, BrokenDevice{Name: m.full, Path: m.path, Err: err})
			continue
		}
		if other, dup := e.byName[m.full]; dup {
			err := fmt.Errorf("%s: %w: volume %d is also called %s (volume %d)", m.path, ErrCorrupt, m.hdr.ID, m.full, other.hdr.ID)
			e.log.Error().Err(err).Msg("volume cannot be opened: the device is offline (run blockhash fsck --repair)")
			e.broken = append(e.broken, BrokenDevice{Name: m.full, Path: m.path, Err: err})
			continue
		}
		e.byName[m.full] = m
	}
	return nil
}

// BrokenDevice is a device whose map could not be opened.
type BrokenDevice struct {
	// Unnamed is set when the volume's header (and its copy) cannot be
	// read: Name is then its file's, not the device's.
	Unnamed bool
	Name    string
	Path    string
	Err     error
}

// Broken lists the devices left out at open because their maps are damaged.
func (e *Engine) Broken() []BrokenDevice {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	return slices.Clone(e.broken)
}

// Device returns the open device called name. A name not found while some
// volume's header cannot be read (its name is unknown) is reported offline
// rather than missing: it may be that volume.
func (e *Engine) Device(name string) (*Device, error) {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	m, ok := e.byName[name]
	if ok && hidden(name) {
		ok = false // a receive's staging volume (not a name users can give)
	}
	if !ok {
		var unnamed []string
		for _, b := range e.broken {
			if b.Name == name {
				return nil, fmt.Errorf("device %s is offline: %w", name, b.Err)
			}
			if b.Unnamed {
				unnamed = append(unnamed, filepath.Base(b.Path))
			}
		}
		if len(unnamed) > 0 {
			return nil, fmt.Errorf("device %s is offline: %w: it is not in the store, but volumes whose headers cannot be read are (%s) and it may be one of them (blockhash fsck --repair rebuilds them)", name, ErrCorrupt, strings.Join(unnamed, ", "))
		}
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return &Device{e: e, m: m}, nil
}

// Devices lists the device names in order.
func (e *Engine) Devices() []string {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	names := make([]string, 0, len(e.byName))
	for n := range e.byName {
		if hidden(n) {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
