package engine

import "fmt"

// Grow makes device name size bytes long, larger than it is; the new
// blocks read as zeros. It is one journaled commit: a crash leaves the
// old size or the new. Its snapshots keep their size. The caller makes
// sure no one uses the device meanwhile (the daemon grows a device it
// does not serve: ublk cannot resize a live device on the kernels we
// serve).
func (e *Engine) Grow(name string, size int64) error {
	if size <= 0 || size%BlockSize != 0 || size > maxDeviceSize {
		return fmt.Errorf("%w: device size %d (a positive multiple of 4096, at most %d)", ErrInvalid, size, int64(maxDeviceSize))
	}
	if err := e.failedErr(); err != nil {
		return err
	}
	if err := e.commit(); err != nil {
		return err
	}
	return e.commitWith(func(rec *record) error {
		e.devMu.Lock()
		defer e.devMu.Unlock()
		m, ok := e.byName[name]
		if !ok || hidden(name) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		if m.hdr.Kind != kindDevice {
			return fmt.Errorf("%w: %s is a snapshot (clone it to get a device that can grow)", ErrInvalid, name)
		}
		if size < m.hdr.Size {
			return fmt.Errorf("%w: %s is %d bytes: a device does not shrink (to %d)", ErrInvalid, name, m.hdr.Size, size)
		}
		if size == m.hdr.Size {
			return nil
		}
		e.pages.mu.Lock()
		defer e.pages.mu.Unlock()
		m.hdr.Size, m.blocks = size, uint64(size/BlockSize)
		m.root = append(m.root, make([]uint32, m.hdr.roots()-len(m.root))...)
		rec.Vols = append(rec.Vols, volWrite{ID: m.hdr.ID, Content: encodeVolume(m.hdr, m.root)})
		return nil
	})
}
