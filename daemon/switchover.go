package daemon

import (
	"context"
	"fmt"
	"time"

	"blockhash/ublk"
)

// A migration's switch-over, on the daemon's side. The source daemon
// pauses the device (its guest's requests wait, none fails), so that the
// last delta sent is the device's final content; once the destination
// serves it, the source releases it (del: the requests still held fail
// with EIO, as the kernel device goes away), or resumes it if the
// migration fails. The destination drops its kernel's cached pages of a
// device whose content it replaced underneath it (invalidate). None of
// these holds Daemon.mu while it waits for requests or flushes, so a long
// pause holds up no other device and no other request.

// pauseDrainTimeout bounds how long a pause waits for the requests
// already in the store to leave it before it gives up (and undoes itself).
const pauseDrainTimeout = time.Minute

// Pause holds the I/O of served device name: new requests wait (they do
// not fail); it returns once every request that was inside the store has
// finished and the store is flushed. The device stays paused until
// Resume, or until Del releases it (the held requests then fail with
// EIO). A pause that fails leaves the device as it was.
func (d *Daemon) Pause(name string) error {
	dv, err := d.lookup(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), pauseDrainTimeout)
	defer cancel()
	start := time.Now()
	if err := dv.gate.pause(ctx, dv.dev.Flush); err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	d.log.Info().Str("device", name).Dur("drain", time.Since(start)).Msg("device I/O paused")
	return nil
}

// Resume lets the held I/O of device name go on. A device not paused is
// left as it is.
func (d *Daemon) Resume(name string) error {
	dv, err := d.lookup(name)
	if err != nil {
		return err
	}
	if err := dv.gate.resume(); err != nil {
		return fmt.Errorf("resume %s: %w", name, err)
	}
	return nil
}

// bufferCacheFlusher is an Export that drops its kernel device's cached
// pages itself (*ublk.Device, and fakes in tests).
type bufferCacheFlusher interface {
	FlushBufferCache() error
}

// Invalidate drops the kernel's cached pages of running device name's
// /dev/ublkbN, so that reads after its content changed underneath it come
// from the store.
func (d *Daemon) Invalidate(name string) error {
	d.mu.Lock()
	dv, ok := d.devs[name]
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotServed, name)
	}
	if d.runningExport(dv) == nil {
		return fmt.Errorf("%w: %s is listed but stopped (blockhash recover -n %d)", ErrNotServed, name, dv.ID)
	}
	return d.invalidate(dv)
}

// invalidate drops what the kernel caches of served device dv, whose
// content was replaced under it (a receive into it); a device not
// running has nothing to drop.
func (d *Daemon) invalidate(dv *device) error {
	exp := d.runningExport(dv)
	if exp == nil {
		return nil
	}
	var err error
	if f, ok := exp.(bufferCacheFlusher); ok {
		err = f.FlushBufferCache()
	} else {
		err = ublk.FlushBufferCache(exp.BlockPath())
	}
	if err != nil {
		return fmt.Errorf("invalidate %s: %w", dv.Name, err)
	}
	d.log.Info().Str("device", dv.Name).Str("path", exp.BlockPath()).Msg("dropped the kernel's cached pages")
	return nil
}

// runningExport is dv's export, nil if it is not running. It takes
// Daemon.mu, which guards dv.exp: the caller must not hold it.
func (d *Daemon) runningExport(dv *device) Export {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !dv.running() {
		return nil
	}
	return dv.exp
}

// lookup finds a device the daemon serves (or lists as stopped).
func (d *Daemon) lookup(name string) (*device, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: no device named", ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dv, ok := d.devs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotServed, name)
	}
	return dv, nil
}
