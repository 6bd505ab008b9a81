package engine

import "fmt"

// Device is a handle on one device of an Engine. Its methods are safe for
// concurrent use and match the ublk backend interface (engine itself knows
// nothing of kernel devices). Offsets and lengths must be multiples of 512.
type Device struct {
	e *Engine
	m *Map
}

// Name is the device's name.
func (d *Device) Name() string { return d.m.full }

// ID is the device's number in the store.
func (d *Device) ID() uint32 { return d.m.hdr.ID }

// Size is the device's size in bytes.
func (d *Device) Size() int64 { return d.m.hdr.Size }

// Domain is the device's dedup domain ("" for the store's default).
func (d *Device) Domain() string { return d.m.hdr.Domain }

// InDomain checks that the device is in dedup domain want (as a user
// names it: DefaultDomain for the default; "" asks nothing). A device
// does not change domains: its blocks are keyed by its domain's secret.
func (d *Device) InDomain(want string) error {
	if want == "" {
		return nil
	}
	have := d.m.hdr.Domain
	if have == "" {
		have = DefaultDomain
	}
	if have != want {
		return fmt.Errorf("%w: %s is in dedup domain %s, not %s (a device does not change domains)", ErrInvalid, d.m.full, have, want)
	}
	return nil
}

// Stats describes the device.
func (d *Device) Stats() DeviceStats { return d.m.stats() }

// ReadAt reads len(p) bytes at off. Unwritten blocks read as zeros.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	if err := d.e.read(d.m, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAt writes p at off. It is durable once Flush returns.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	if err := d.e.write(d.m, p, off, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAtFUA writes p at off and returns once it is durable.
func (d *Device) WriteAtFUA(p []byte, off int64) (int, error) {
	if _, err := d.WriteAt(p, off); err != nil {
		return 0, err
	}
	if err := d.e.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush makes every completed write durable (of every device of the store:
// one commit serves them all).
func (d *Device) Flush() error { return d.e.Flush() }

// Discard drops the range's content: it reads back as zeros and its blocks
// are released.
func (d *Device) Discard(off, length int64) error { return d.e.write(d.m, nil, off, true, length) }

// WriteZeroes makes the range read back as zeros (zero blocks take no space).
func (d *Device) WriteZeroes(off, length int64) error { return d.e.write(d.m, nil, off, true, length) }

// MappedBlocks calls fn with the number of every logical block that holds
// data (written, and not discarded or zeroed since), in no particular
// order, uncommitted changes included. Blocks it does not report read as
// zeros. It is one pass over the device's map that skips the map file's
// holes, so a large, mostly empty device costs little. It stops at fn's
// first error and returns it.
func (d *Device) MappedBlocks(fn func(lba uint64) error) error {
	return d.m.each(func(lba uint64, _ mapEntry) error { return fn(lba) })
}
