package daemon

import (
	"errors"
	"fmt"

	"blockhash/ublk"
)

// claim tells whether kernel device id, remembered as one of ours, may be
// taken over (user recovery) or deleted by this daemon. It returns
// present=false when there is no such kernel device, and ErrForeign when
// there is one that another process serves, or whose size (or, with
// lbs > 0, logical block size) is not size (size < 0: not checked, for a
// device gone from the store). Nothing is changed.
func (d *Daemon) claim(id int, size int64, lbs int) (present bool, err error) {
	if id < 0 {
		return false, nil
	}
	kd, err := d.exp.Lookup(id)
	if errors.Is(err, ublk.ErrNoDevice) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("inspect /dev/ublkb%d: %w", id, err)
	}
	switch {
	case kd.ServerAlive:
		return true, fmt.Errorf("%w: /dev/ublkb%d is served by process %d (state %s)", ErrForeign, id, kd.ServerPID, kernelStateName(kd.State))
	case size >= 0 && kd.Size != size:
		return true, fmt.Errorf("%w: /dev/ublkb%d has %d bytes, the store device %d", ErrForeign, id, kd.Size, size)
	case lbs > 0 && kd.LBS != lbs:
		return true, fmt.Errorf("%w: /dev/ublkb%d has logical blocks of %d bytes, the store device %d", ErrForeign, id, kd.LBS, lbs)
	}
	return true, nil
}

func kernelStateName(s int) string {
	switch s {
	case ublk.StateDead:
		return "dead"
	case ublk.StateLive:
		return "live"
	case ublk.StateQuiesced:
		return "quiesced"
	}
	return fmt.Sprintf("%d", s)
}
