package daemon

import (
	"context"
	"fmt"
	"net"
	"time"

	"blockhash/engine"
)

// Scrub verifies every stored block of the served store at the rate the
// request asks (bytes per second, 0: unbounded) while the devices keep
// serving, and answers when it is done, when ctx ends or when the daemon
// shuts down (then with what it checked so far). One scrub runs at a time.
func (d *Daemon) Scrub(ctx context.Context, r Request) (*engine.ScrubReport, error) {
	if r.Rate < 0 {
		return nil, fmt.Errorf("%w: scrub rate %d", ErrInvalid, r.Rate)
	}
	ctx, cancel := context.WithCancel(ctx)
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

// scrubConn serves a scrub request on connection c: the scrub stops when
// the client goes away (blockhash scrub interrupted), since the client
// sends nothing after its request and a read returns only then.
func (d *Daemon) scrubConn(c net.Conn, r Request) Response {
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	c.SetReadDeadline(time.Time{})
	go func() {
		defer close(watched)
		var b [64]byte
		for { // an error comes once the client closes, or at the deadline below
			if _, err := c.Read(b[:]); err != nil {
				break
			}
		}
		cancel()
	}()
	rep, err := d.Scrub(ctx, r)
	c.SetReadDeadline(time.Now()) // end the watch
	<-watched
	var resp Response
	if err != nil {
		d.log.Warn().Str("op", r.Op).Err(err).Msg("request failed")
		resp.Error = err.Error()
	}
	resp.Scrub = rep
	return resp
}
