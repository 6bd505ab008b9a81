package engine

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
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

// openMaps opens every device's map (header and size only). A map that
// cannot be opened (damaged header, two maps with one id) is left out and
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
	for _, de := range ents {
		name := de.Name
		if strings.HasSuffix(name, ".tmp") {
			if !e.opts.ReadOnly {
				e.fs.Remove(filepath.Join(dir, name)) // a create that did not finish
			}
			continue
		}
		if !strings.HasSuffix(name, ".map") {
			continue
		}
		path := filepath.Join(dir, name)
		m, err := openMap(e.fs, path, e.log, e.opts.ReadOnly)
		if err == nil && m.hdr.Name+".map" != name {
			m.close()
			err = fmt.Errorf("%s: %w: map names device %q", path, ErrCorrupt, m.hdr.Name)
		}
		if err == nil {
			if other, dup := e.byID[m.hdr.ID]; dup {
				m.close()
				err = fmt.Errorf("%s: %w: device id %d is also %s's", path, ErrCorrupt, m.hdr.ID, other.hdr.Name)
			}
		}
		if err != nil {
			e.log.Error().Err(err).Msg("device map cannot be opened: the device is offline (run blockhash fsck --repair)")
			e.broken = append(e.broken, BrokenDevice{Name: strings.TrimSuffix(name, ".map"), Path: path, Err: err})
			continue
		}
		e.byName[m.hdr.Name], e.byID[m.hdr.ID] = m, m
		e.nextID = max(e.nextID, m.hdr.ID+1)
	}
	return nil
}

// BrokenDevice is a device whose map could not be opened.
type BrokenDevice struct {
	Name string
	Path string
	Err  error
}

// Broken lists the devices left out at open because their maps are damaged.
func (e *Engine) Broken() []BrokenDevice {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	return slices.Clone(e.broken)
}

// CreateDevice makes a new, all-zero device.
func (e *Engine) CreateDevice(name string, size int64) (*Device, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if size <= 0 || size%BlockSize != 0 {
		return nil, fmt.Errorf("%w: device size %d must be a positive multiple of 4096", ErrInvalid, size)
	}
	if err := e.failedErr(); err != nil {
		return nil, err
	}
	e.devMu.Lock()
	defer e.devMu.Unlock()
	if _, ok := e.byName[name]; ok {
		return nil, fmt.Errorf("%w: %s", ErrExists, name)
	}
	path := filepath.Join(e.dir, "devices", name+".map")
	if _, err := e.fs.Stat(path); err == nil {
		return nil, fmt.Errorf("%w: %s (being deleted)", ErrExists, name)
	}
	m, err := createMap(e.fs, path, mapHeader{ID: e.nextID, Size: size, Created: time.Now(), Name: name})
	if err != nil {
		return nil, err
	}
	if err := e.fs.SyncDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	e.nextID++
	e.byName[name], e.byID[m.hdr.ID] = m, m
	return &Device{e: e, m: m}, nil
}

// Device returns the open device called name.
func (e *Engine) Device(name string) (*Device, error) {
	e.devMu.RLock()
	defer e.devMu.RUnlock()
	m, ok := e.byName[name]
	if !ok {
		for _, b := range e.broken {
			if b.Name == name {
				return nil, fmt.Errorf("device %s is offline: %w", name, b.Err)
			}
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
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DeleteDevice removes a device and releases its blocks; it returns once
// the deletion is committed.
func (e *Engine) DeleteDevice(name string) error {
	if err := e.failedErr(); err != nil {
		return err
	}
	e.epoch.Lock() // no write of the device is half done
	e.devMu.Lock()
	m, ok := e.byName[name]
	if ok {
		delete(e.byName, name)
		m.deleted.Store(true)
	}
	e.devMu.Unlock()
	e.epoch.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	e.epoch.RLock()
	err := m.each(func(_ uint64, ent mapEntry) error {
		if !ent.holds() {
			return nil
		}
		return e.release(ent)
	})
	if err == nil {
		e.deletingMu.Lock()
		e.deleting = append(e.deleting, m)
		e.deletingMu.Unlock()
	}
	e.epoch.RUnlock()
	if err != nil {
		e.fail(err)
		return err
	}
	return e.commit()
}
