package daemon

import (
	"context"
	"fmt"

	"blockhash/engine"
)

// Scrub verifies every stored block of the served store at the rate the
// request asks (bytes per second, 0: unbounded) while the devices keep
// serving, and answers when it is done. One scrub runs at a time.
func (d *Daemon) Scrub(r Request) (*engine.ScrubReport, error) {
	if r.Rate < 0 {
		return nil, fmt.Errorf("%w: scrub rate %d", ErrInvalid, r.Rate)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.scrubMu.Lock()
	if d.scrubStop != nil {
		d.scrubMu.Unlock()
		return nil, fmt.Errorf("%w: a scrub is already running", ErrInvalid)
	}
	d.scrubStop = cancel
	d.scrubMu.Unlock()
	defer func() {
		d.scrubMu.Lock()
		d.scrubStop = nil
		d.scrubMu.Unlock()
	}()
	d.log.Info().Int64("rate", r.Rate).Msg("scrub started")
	rep, err := d.eng.Scrub(ctx, engine.ScrubOptions{Rate: r.Rate})
	if err != nil {
		return nil, err
	}
	ev := d.log.Info()
	if rep.DamagedSlots > 0 {
		ev = d.log.Error()
	}
	ev.Uint64("checked", rep.BlocksChecked).Int("new_damaged", rep.NewDamaged).Int("damaged_slots", rep.DamagedSlots).
		Uint64("damaged_device_blocks", rep.DamagedBlocks).Float64("seconds", rep.Seconds).Msg("scrub done")
	return &rep, nil
}

// stopScrub cancels a running scrub (the daemon is shutting down): it
// answers with what it checked so far.
func (d *Daemon) stopScrub() {
	d.scrubMu.Lock()
	if d.scrubStop != nil {
		d.scrubStop()
	}
	d.scrubMu.Unlock()
}
