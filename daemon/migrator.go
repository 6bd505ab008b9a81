package daemon

import (
	"fmt"
	"io"
	"strings"
	"time"

	"blockhash/engine"
	"blockhash/replica"
)

// The client's side of replication through a running daemon: a round
// snapshots a device, sends it to a receive on another host through the
// daemon (the client relays between the daemon's socket and the remote),
// and prunes the older snapshots of the round's kind; a migration runs
// rounds, then the switch (pause, last round, release). The remote side
// is whatever Remote starts: a command under a remote shell for the CLI,
// another daemon's socket in tests.

// RemoteSession is a receive running on another host: In carries the
// stream to it, Out its answers; Wait ends it (after In is closed).
type RemoteSession struct {
	In   io.WriteCloser
	Out  io.Reader
	Wait func() error
}

// Remote starts a receive of device dev (with extra receive flags).
type Remote func(dev string, args ...string) (RemoteSession, error)

// Migrator sends and migrates devices of the daemon Client talks to.
type Migrator struct {
	Client Client
	Remote Remote
	// Rounds and MaxDelta end a migration's rounds: after Rounds, or
	// after a round that sent at most MaxDelta bytes of data.
	Rounds   int
	MaxDelta int64
	// Progress, if set, hears of each round.
	Progress func(round int, st replica.Stats)
	// NoCompress sends blocks as they are (replica.SendOptions).
	NoCompress bool
}

// SnapName names a snapshot a round takes.
func SnapName(prefix string) string {
	return prefix + time.Now().UTC().Format("20060102T150405.000000")
}

// Round snapshots dev as PREFIX-TIME, sends it to the remote (from the
// newest snapshot both hold), then deletes dev's older PREFIX snapshots
// here (the receiver deletes its own).
func (m *Migrator) Round(dev, prefix string, force bool, remoteArgs ...string) (replica.Stats, error) {
	snap := SnapName(prefix)
	if _, err := m.Client.Do(Request{Op: "snapshot", Name: dev, Snap: snap, Replica: true, ID: -1}); err != nil {
		return replica.Stats{}, err
	}
	if force {
		remoteArgs = append(remoteArgs, "--force")
	}
	st, err := m.send(Request{Op: "send", Name: dev + "@" + snap, Auto: true, Force: force, NoCompress: m.NoCompress, ID: -1}, remoteArgs)
	if err != nil {
		return st, err
	}
	m.prune(dev, prefix, snap)
	return st, nil
}

// send relays a send of the daemon's to a new remote receive.
func (m *Migrator) send(r Request, remoteArgs []string) (replica.Stats, error) {
	dev, _ := engine.SplitName(r.Name)
	rs, err := m.Remote(dev, remoteArgs...)
	if err != nil {
		return replica.Stats{}, err
	}
	conn, err := m.Client.Stream(r)
	if err != nil {
		rs.In.Close()
		rs.Wait()
		return replica.Stats{}, err
	}
	st, err := replica.Relay(conn, rs.Out, rs.In, conn.CloseWrite)
	conn.Close()
	rs.In.Close()
	if werr := rs.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("the remote side failed: %w", werr)
	}
	return st, err
}

// prune deletes dev's snapshots named PREFIX… other than keep.
func (m *Migrator) prune(dev, prefix, keep string) {
	resp, err := m.Client.Do(Request{Op: "stats", ID: -1})
	if err != nil || resp.Stats == nil {
		return
	}
	for _, d := range resp.Stats.Devices {
		if dv, sn := engine.SplitName(d.Name); dv == dev && strings.HasPrefix(sn, prefix) && sn != keep {
			m.Client.Do(Request{Op: "delete", Name: d.Name, ID: -1})
		}
	}
}

// migrateArgs make the destination serve the device from the first round
// and take later rounds into it while it serves.
var migrateArgs = []string{"--live", "--serve"}

// Prepare runs a migration's rounds: until one sends at most MaxDelta
// bytes of data, or Rounds of them.
func (m *Migrator) Prepare(dev string) error {
	rounds := max(m.Rounds, 1)
	for i := 1; i <= rounds; i++ {
		st, err := m.Round(dev, "migrate-", false, migrateArgs...)
		if err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
		if m.Progress != nil {
			m.Progress(i, st)
		}
		if st.RawDataBytes <= m.MaxDelta {
			break
		}
	}
	return nil
}

// SwitchReport says what a switch did.
type SwitchReport struct {
	Stats replica.Stats
	// Drain is how long the pause took to take hold (requests in the
	// store finished, the store flushed); Pause how long the device's
	// I/O was held in all, until the device was released here.
	Drain, Pause time.Duration
}

// Switch pauses dev's I/O here, sends the last changes, and releases dev
// here once the destination serves it. If the switch fails, dev's I/O
// resumes here.
func (m *Migrator) Switch(dev string) (SwitchReport, error) {
	var rep SwitchReport
	start := time.Now()
	if err := m.Client.Pause(dev); err != nil {
		return rep, fmt.Errorf("pausing %s: %w", dev, err)
	}
	rep.Drain = time.Since(start)
	st, err := m.Round(dev, "migrate-", false, migrateArgs...)
	rep.Stats = st
	if err != nil {
		if rerr := m.Client.Resume(dev); rerr != nil {
			return rep, fmt.Errorf("switch failed (%w), and resuming %s here failed too: %v", err, dev, rerr)
		}
		return rep, fmt.Errorf("switch failed, %s serves here again (the destination's copy is stale): %w", dev, err)
	}
	if _, err := m.Client.Do(Request{Op: "del", Name: dev, KeepData: true, ID: -1}); err != nil {
		return rep, fmt.Errorf("%s serves on the destination now, but releasing it here failed: %w", dev, err)
	}
	rep.Pause = time.Since(start)
	return rep, nil
}
