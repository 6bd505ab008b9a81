package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"time"

	"blockhash/engine"
	"blockhash/replica"
)

// Sending and receiving replicas while the daemon runs: the client's
// request is answered with an empty Response (or the error that refuses
// it), then the connection carries the replication stream, which the
// client relays to the other store, and ends with the daemon's STATS
// frame (replica.Relay). A send reads a snapshot (served devices keep
// serving). A receive fills a hidden staging volume and makes it the
// device at the end; it is refused for a served device unless Live (the
// destination of a migration, whose guest has not started), and with
// Serve the daemon serves the device once it is received.

// streamConn runs a send or receive on c.
func (d *Daemon) streamConn(c net.Conn, r Request) {
	c.SetDeadline(time.Time{}) // a transfer takes as long as it takes
	if err := d.checkStream(r); err != nil {
		d.log.Warn().Str("op", r.Op).Err(err).Msg("request failed")
		json.NewEncoder(c).Encode(Response{Error: err.Error()})
		return
	}
	if err := json.NewEncoder(c).Encode(Response{}); err != nil {
		return
	}
	var st replica.Stats
	var err error
	log := d.log.With().Str("op", r.Op).Str("name", r.Name).Logger()
	if r.Op == "send" {
		st, err = replica.Send(d.eng, replica.SendOptions{Snapshot: r.Name, Base: r.Base, BaseAuto: r.Auto, NoCompress: r.NoCompress,
			Force: r.Force, Log: log}, c, c)
	} else {
		st, err = replica.Receive(d.eng, replica.ReceiveOptions{Device: r.Name, Force: r.Force, Log: log,
			Delete:       func(name string) error { return d.DeleteVolume(Request{Name: name}) },
			BeforeFinish: func() error { return d.checkStream(r) },
			AfterFinish:  func() error { return d.afterReceive(r) }}, c, c)
	}
	if err != nil {
		log.Error().Err(err).Msg("replication failed")
	} else {
		log.Info().Int64("wire_out_bytes", st.WireOut).Int64("wire_in_bytes", st.WireIn).
			Uint64("blocks_sent", st.BlocksSent).Uint64("blocks_linked", st.BlocksLinked).
			Float64("seconds", st.Seconds).Msg("replication done")
	}
	replica.WriteStats(c, st, err)
}

// checkStream refuses what a stream may not do.
func (d *Daemon) checkStream(r Request) error {
	if r.Name == "" {
		return fmt.Errorf("%w: %s needs a device", ErrInvalid, r.Op)
	}
	if r.Op == "send" {
		if !isSnapshot(r.Name) {
			return fmt.Errorf("%w: send a snapshot (dev@snap), not %s", ErrInvalid, r.Name)
		}
		return nil
	}
	if err := engine.ValidName(r.Name); err != nil {
		return err
	}
	if r.Live {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inUseLocked(r.Name, "receive into it")
}

// afterReceive serves the received device if asked to.
func (d *Daemon) afterReceive(r Request) error {
	d.mu.Lock()
	dv, served := d.devs[r.Name]
	d.mu.Unlock()
	if served {
		return d.invalidate(dv)
	}
	if !r.Serve {
		return nil
	}
	_, err := d.Add(Request{Op: "add", Name: r.Name, ID: -1})
	return err
}
