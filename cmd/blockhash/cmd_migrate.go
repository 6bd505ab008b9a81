package main

import (
	"fmt"

	"blockhash/daemon"
	"blockhash/engine"
	"blockhash/replica"
)

// Migration of a served device to another host's daemon: rounds of
// incremental sends while the guest runs, then the switch: I/O on the
// device pauses here (requests wait, nothing fails), the last changes
// travel, the destination makes them current and serves the device, and
// only once it confirms does this daemon release the device. If the
// switch fails, I/O resumes here and nothing changed for the guest.

func init() {
	register(&command{name: "migrate", usage: "DEV HOST [-e COMMAND] [--remote-bin BIN] [--rounds N] [--max-delta SIZE] [--prepare|--switch] [--compress lz4|none]",
		summary: "move a served device to HOST's daemon: incremental rounds while the guest runs, then a short switch",
		help: "Migrate needs this host's daemon serving DEV and HOST's daemon running. Each round snapshots DEV and " +
			"sends the changes since the last round (the first sends what HOST lacks); the destination serves DEV " +
			"from the first round on, replaced in place by later rounds (use it only after the switch). Rounds stop " +
			"when one sends at most --max-delta, or after --rounds. Then the switch: I/O on DEV pauses here, the last " +
			"changes travel, HOST makes them current, and DEV is released here (kept in the store, not served) once " +
			"HOST confirms; the pause is printed. --prepare runs the rounds only; --switch runs the switch only (for " +
			"QEMU live migration: --prepare, start the destination QEMU on HOST's device, migrate with the " +
			"pause-before-switchover capability, run --switch at pre-switchover, then migrate-continue).",
		run: runMigrate})
	register(&command{name: "pause", usage: "DEV", summary: "hold a served device's I/O (requests wait, none fails) once its store is flushed: what migrate's switch does",
		run: func(e *env, args []string) error { return e.gateOp("pause", args) }})
	register(&command{name: "resume", usage: "DEV", summary: "let a paused device's I/O go on (after a migrate that died in its switch, say)",
		run: func(e *env, args []string) error { return e.gateOp("resume", args) }})
}

// gateOp pauses or resumes a served device through the daemon.
func (e *env) gateOp(op string, args []string) error {
	pos, err := parseArgs(newFlags(op), args, 1)
	if err != nil {
		return err
	}
	c := e.client()
	if op == "pause" {
		err = c.Pause(pos[0])
	} else {
		err = c.Resume(pos[0])
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %sd\n", pos[0], op)
	return nil
}

func runMigrate(e *env, args []string) error {
	fs := newFlags("migrate")
	rf := addRemoteFlags(fs)
	rounds := fs.Int("rounds", 5, "at most this many rounds before the switch")
	var maxDelta sizeFlag
	maxDelta.v = 64 << 20
	fs.Var(&maxDelta, "max-delta", "switch once a round sends at most this much data")
	prepare := fs.Bool("prepare", false, "run the rounds only; the device keeps serving here")
	switchOnly := fs.Bool("switch", false, "run the switch only (after --prepare)")
	compress := compressFlag(fs)
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	if err := e.setCompress(*compress); err != nil {
		return err
	}
	dev, host := pos[0], pos[1]
	if err := engine.ValidName(dev); err != nil {
		return err
	}
	if *prepare && *switchOnly {
		return usagef("--prepare and --switch exclude each other")
	}
	if *rounds < 1 {
		return usagef("--rounds %d: at least 1", *rounds)
	}
	ignorePipe()
	if !e.daemonRunning() {
		return fmt.Errorf("%w: migrate moves a device this host's daemon serves, and no daemon runs (use blockhash sync)", daemon.ErrNotRunning)
	}
	c := e.client()
	resp, err := c.Do(daemon.Request{Op: "list", ID: -1})
	if err != nil {
		return err
	}
	served := false
	for _, d := range resp.Devices {
		served = served || d.Name == dev
	}
	if !served {
		return fmt.Errorf("%w: %s is not served here (use blockhash sync for a device that is not)", engine.ErrNotFound, dev)
	}
	m := daemon.Migrator{Client: c, Remote: rf.remote(host, e.stderr), Rounds: *rounds, MaxDelta: maxDelta.v, NoCompress: e.noCompress,
		Progress: func(i int, st replica.Stats) {
			fmt.Fprintf(e.stdout, "round %d: sent %d of %d blocks (%s of data, %s on the wire) in %.2fs\n", i,
				st.BlocksSent, st.BlocksOffered, human(st.RawDataBytes), human(st.WireOut+st.WireIn), st.Seconds)
		}}
	if !*switchOnly {
		if err := m.Prepare(dev); err != nil {
			return err
		}
	}
	if *prepare {
		fmt.Fprintf(e.stdout, "%s is ready to switch to %s (blockhash migrate %s %s --switch)\n", dev, host, dev, host)
		return nil
	}
	rep, err := m.Switch(dev)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "switch: sent %d blocks (%s) with I/O paused; pause %.3fs (drain and flush %.3fs); %s now serves on %s, released here\n",
		rep.Stats.BlocksSent, human(rep.Stats.RawDataBytes), rep.Pause.Seconds(), rep.Drain.Seconds(), dev, host)
	return nil
}
