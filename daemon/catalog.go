package daemon

import (
	"fmt"
	"sort"
	"strings"

	"blockhash/engine"
)

// The store's catalog while the daemon serves it: snapshots, clones,
// rollbacks, deletions and diffs of devices, served or not. A snapshot or
// clone of a served device is taken while it serves (its writers pause
// for one commit). A rollback or deletion would pull a device from under
// its guest, so it is refused while the daemon serves, or remembers, the
// device or a snapshot it would delete; the error says how to stop
// serving it. Each holds Daemon.mu, so no add interleaves with the check.

// Snapshot takes snapshot r.Snap of device r.Name.
func (d *Daemon) Snapshot(r Request) error {
	if r.Snap == "" {
		return fmt.Errorf("%w: snapshot needs a device and a snapshot name", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if r.Replica {
		dev, err := d.eng.Device(r.Name)
		if err != nil {
			return err
		}
		if err := dev.Replicable(); err != nil {
			return err
		}
	}
	return d.eng.Snapshot(r.Name, r.Snap)
}

// Clone makes device r.Target from r.Name (a device or "dev@snap").
func (d *Daemon) Clone(r Request) error {
	if r.Target == "" {
		return fmt.Errorf("%w: clone needs a source and a new device name", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eng.Clone(r.Name, r.Target)
}

// Rollback returns device r.Name to its snapshot r.Snap; refused while
// the device is served.
func (d *Daemon) Rollback(r Request) error {
	if r.Snap == "" || isSnapshot(r.Name) {
		return fmt.Errorf("%w: rollback needs a device and one of its snapshots", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.inUseLocked(r.Name, "roll it back"); err != nil {
		return err
	}
	return d.eng.Rollback(r.Name, r.Snap)
}

// DeleteVolume deletes device or snapshot r.Name from the store (with
// r.Recursive, a device's snapshots too); refused while the daemon serves
// it or a snapshot it would delete. The space is released in the
// background (progress in stats).
func (d *Daemon) DeleteVolume(r Request) error {
	if r.Name == "" {
		return fmt.Errorf("%w: delete needs a device or snapshot name", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.inUseLocked(r.Name, "delete it"); err != nil {
		return err
	}
	if !isSnapshot(r.Name) {
		for _, s := range d.snapshotsOf(r.Name) {
			if err := d.inUseLocked(s, "delete "+r.Name); err != nil {
				return err
			}
		}
	}
	return d.eng.DeleteDevice(r.Name, engine.DeleteOptions{Recursive: r.Recursive})
}

// Diff lists the block ranges that differ between volumes r.Name and
// r.Target.
func (d *Daemon) Diff(r Request) ([]engine.Range, error) {
	if r.Name == "" || r.Target == "" {
		return nil, fmt.Errorf("%w: diff needs two devices or snapshots", ErrInvalid)
	}
	return d.eng.Diff(r.Name, r.Target)
}

// inUseLocked refuses an operation (what: "roll it back") on volume name
// while the daemon serves it, or remembers it as served (stopped or
// offline), or an import or export streams it. The caller holds d.mu.
func (d *Daemon) inUseLocked(name, what string) error {
	if err := d.busyLocked(name, what); err != nil {
		return err
	}
	if dv, ok := d.devs[name]; ok {
		how := "served as " + dv.info().Path
		if !dv.running() {
			how = fmt.Sprintf("listed as /dev/ublkb%d (stopped)", dv.ID)
		}
		return fmt.Errorf("%w: %s is %s: stop serving it with blockhash del %s --keep-data before you %s", ErrInUse, name, how, name, what)
	}
	for _, s := range d.offline {
		if s.Name == name {
			return fmt.Errorf("%w: %s is listed as /dev/ublkb%d (offline): stop serving it with blockhash del %s --keep-data before you %s", ErrInUse, name, s.ID, name, what)
		}
	}
	return nil
}

// snapshotsOf lists the snapshots of device dev in the store, by name.
func (d *Daemon) snapshotsOf(dev string) []string {
	var out []string
	for _, n := range d.eng.Devices() {
		if strings.HasPrefix(n, dev+"@") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
