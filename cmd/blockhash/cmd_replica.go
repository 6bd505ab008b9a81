package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"blockhash/daemon"
	"blockhash/engine"
	"blockhash/replica"
)

// Replication: send and receive speak the replication protocol on
// standard output and input, so any remote shell carries it; sync runs
// the remote side itself. Each goes through the daemon when one runs
// (the CLI relays the stream to its socket) and opens the store directly
// otherwise.

func init() {
	register(&command{name: "send", usage: "DEV[@SNAP] [--from BASE] [--force] [--compress lz4|none] [--stats]",
		summary: "send a snapshot (taken now if only DEV is named) to a receive on standard output/input",
		help: "Send speaks the replication protocol on standard output (frames out) and standard input (answers in): " +
			"pipe it to `blockhash receive DEV` on another store, for example through ssh. Only the blocks the " +
			"receiver lacks travel, compressed. With --from, only what changed since BASE (a snapshot both stores " +
			"hold) travels. Without @SNAP, a snapshot DEV@send-TIME is taken first.",
		run: runSend})
	register(&command{name: "receive", usage: "DEV [--force] [--live] [--serve] [--stats]",
		summary: "receive a device or snapshot from send on standard input/output (atomic; a rerun resumes)",
		help: "Receive makes DEV a replica of the snapshot a sender sends, and takes that snapshot here too. Every " +
			"block is checked against its key before it is stored. Until the end, DEV keeps its old content; an " +
			"interrupted receive keeps what arrived, and the next receive of the same snapshot carries on from there. " +
			"A full stream replaces an existing DEV only with --force; an incremental one is refused if DEV changed " +
			"since the base snapshot, unless --force.",
		run: runReceive})
	register(&command{name: "sync", usage: "DEV HOST [-e COMMAND] [--remote-bin BIN] [--force] [--compress lz4|none] [--stats]",
		summary: "snapshot DEV and send it to HOST's store, incrementally from the newest snapshot both hold",
		help: "Sync runs `COMMAND HOST BIN receive DEV` (COMMAND is ssh unless -e says otherwise; BIN is blockhash " +
			"unless --remote-bin says otherwise, and may carry flags such as --store) and sends it a new snapshot " +
			"DEV@sync-TIME, incrementally from the newest snapshot both stores hold. Older sync snapshots are " +
			"deleted on both sides once the new one is in place.",
		run: runSync})
}

func (e *env) daemonRunning() bool {
	c := e.client()
	if _, err := os.Stat(c.Socket); err != nil {
		return false
	}
	return c.Running()
}

// takeSnapshot snapshots dev (through the daemon if it runs).
func (e *env) takeSnapshot(dev, snap string) error {
	_, err := e.viaDaemonOr(daemon.Request{Op: "snapshot", Name: dev, Snap: snap, Replica: true, ID: -1}, noBackground,
		func(eng *engine.Engine) error { return replicaSnapshot(eng, dev, snap) })
	if err == nil {
		fmt.Fprintf(e.stderr, "snapshot %s@%s taken\n", dev, snap)
	}
	return err
}

// ignorePipe makes a write to a closed pipe (a dropped link, a remote
// that died) an EPIPE error the transfer handles (a receive commits what
// it stored), rather than a SIGPIPE that kills the process first.
func ignorePipe() { signal.Ignore(syscall.SIGPIPE) }

func (e *env) printStats(on bool, st replica.Stats) {
	if !on {
		return
	}
	b, _ := json.Marshal(st)
	fmt.Fprintf(e.stderr, "%s\n", b)
}

// sendTo sends name (a snapshot) to a receiver reading w and answering on
// r, through the daemon if it runs.
func (e *env) sendTo(o replica.SendOptions, r io.Reader, w io.Writer) (replica.Stats, error) {
	if e.daemonRunning() {
		conn, err := e.client().Stream(daemon.Request{Op: "send", Name: o.Snapshot, Base: o.Base, Auto: o.BaseAuto, Force: o.Force, NoCompress: e.noCompress, ID: -1})
		if err != nil {
			return replica.Stats{}, err
		}
		defer conn.Close()
		return replica.Relay(conn, r, w, conn.CloseWrite)
	}
	eng, err := e.openStore(noBackground)
	if err != nil {
		return replica.Stats{}, err
	}
	o.Log, o.NoCompress = e.log, e.noCompress
	st, err := replica.Send(eng, o, r, w)
	if cerr := eng.Close(); err == nil {
		err = cerr
	}
	return st, err
}

func runSend(e *env, args []string) error {
	fs := newFlags("send")
	from := fs.String("from", "", "send only the changes since this snapshot of the device (BASE or @BASE), which the receiver holds")
	force := fs.Bool("force", false, "let the receiver replace its device, or discard its changes since the base")
	stats := fs.Bool("stats", false, "print what was sent as one JSON line on standard error")
	compress := compressFlag(fs)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if err := e.setCompress(*compress); err != nil {
		return err
	}
	ignorePipe()
	dev, snap := engine.SplitName(pos[0])
	if err := engine.ValidName(dev); err != nil {
		return err
	}
	if snap == "" {
		snap = daemon.SnapName("send-")
		if err := e.takeSnapshot(dev, snap); err != nil {
			return err
		}
	}
	base := strings.TrimPrefix(*from, "@")
	if d, s := engine.SplitName(base); s != "" {
		if d != dev {
			return usagef("--from %s: the base must be a snapshot of %s", *from, dev)
		}
		base = s
	}
	st, err := e.sendTo(replica.SendOptions{Snapshot: dev + "@" + snap, Base: base, Force: *force}, e.stdin, e.stdout)
	e.printStats(*stats, st)
	return err
}

func runReceive(e *env, args []string) error {
	fs := newFlags("receive")
	force := fs.Bool("force", false, "replace an existing device with a full stream, or discard its changes since the base")
	live := fs.Bool("live", false, "(daemon) replace the device even while it is served: for a migration's destination, whose guest has not started")
	serve := fs.Bool("serve", false, "(daemon) serve the device once received")
	stats := fs.Bool("stats", false, "print what was received as one JSON line on standard error")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	dev := pos[0]
	if err := engine.ValidName(dev); err != nil {
		return err
	}
	ignorePipe()
	var st replica.Stats
	if e.daemonRunning() {
		conn, err := e.client().Stream(daemon.Request{Op: "receive", Name: dev, Force: *force, Live: *live, Serve: *serve, ID: -1})
		if err != nil {
			return err
		}
		defer conn.Close()
		st, err = replica.Relay(conn, e.stdin, e.stdout, conn.CloseWrite)
		e.printStats(*stats, st)
		return err
	}
	if *live || *serve {
		return fmt.Errorf("%w: --live and --serve need the daemon running", engine.ErrInvalid)
	}
	if err := daemon.NotServed(e.store, dev); err != nil {
		return err
	}
	eng, err := e.openStore(noBackground)
	if err != nil {
		return err
	}
	st, err = replica.Receive(eng, replica.ReceiveOptions{Device: dev, Force: *force, Log: e.log}, e.stdin, e.stdout)
	if cerr := eng.Close(); err == nil {
		err = cerr
	}
	e.printStats(*stats, st)
	return err
}

// remoteFlags are the flags of commands that run a remote receive.
type remoteFlags struct {
	shell, bin *string
}

func addRemoteFlags(fs interface {
	String(name, value, usage string) *string
}) remoteFlags {
	return remoteFlags{
		shell: fs.String("e", "ssh", "the remote shell command, run as `COMMAND HOST BIN receive DEV`"),
		bin:   fs.String("remote-bin", "blockhash", "the blockhash command on HOST (may carry flags, e.g. 'blockhash --store /srv/bh')"),
	}
}

// remote returns how to start a receive on host: `SHELL HOST BIN receive
// DEV ARGS...`, its standard error passed through.
func (rf remoteFlags) remote(host string, stderr io.Writer) daemon.Remote {
	return func(dev string, args ...string) (daemon.RemoteSession, error) {
		argv := strings.Fields(*rf.shell)
		if len(argv) == 0 {
			return daemon.RemoteSession{}, usagef("-e: empty remote shell command")
		}
		bin := strings.Fields(*rf.bin)
		if len(bin) == 0 {
			return daemon.RemoteSession{}, usagef("--remote-bin: empty command")
		}
		argv = append(append(append(argv, host), bin...), append([]string{"receive", dev}, args...)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return daemon.RemoteSession{}, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return daemon.RemoteSession{}, err
		}
		if err := cmd.Start(); err != nil {
			return daemon.RemoteSession{}, fmt.Errorf("starting the remote side (%s): %w", strings.Join(argv, " "), err)
		}
		return daemon.RemoteSession{In: in, Out: out, Wait: cmd.Wait}, nil
	}
}

func runSync(e *env, args []string) error {
	fs := newFlags("sync")
	rf := addRemoteFlags(fs)
	force := fs.Bool("force", false, "let the receiver replace its device, or discard its changes since the base")
	stats := fs.Bool("stats", false, "print what was sent as one JSON line on standard error")
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
	ignorePipe()
	st, err := e.syncOnce(rf, dev, host, "sync-", *force)
	e.printStats(*stats, st)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: sent %s (%d blocks of %d sent, %s on the wire) in %.1fs\n", dev, st.Snapshot,
		st.BlocksSent, st.BlocksOffered, human(st.WireOut+st.WireIn), st.Seconds)
	return nil
}

// compressFlag adds --compress to send, sync and migrate.
func compressFlag(fs *flag.FlagSet) *string {
	return fs.String("compress", "lz4", "how blocks travel: lz4, or none for a link faster than LZ4 compresses on one core (about 400 MB/s, 3 Gbit/s, where compressing only costs CPU)")
}

// setCompress takes --compress's value.
func (e *env) setCompress(v string) error {
	switch v {
	case "lz4":
		e.noCompress = false
	case "none":
		e.noCompress = true
	default:
		return usagef("--compress %q: lz4 or none", v)
	}
	return nil
}

// replicaSnapshot takes snapshot snap of dev to be sent, on the store
// opened as eng: a device that cannot be replicated is refused first
// (the daemon's snapshot with Replica does the same).
func replicaSnapshot(eng *engine.Engine, dev, snap string) error {
	d, err := eng.Device(dev)
	if err != nil {
		return err
	}
	if err := d.Replicable(); err != nil {
		return err
	}
	return eng.Snapshot(dev, snap)
}

// syncOnce snapshots dev as PREFIX-TIME, sends it to HOST incrementally
// from the newest snapshot both hold, and deletes this side's older
// PREFIX snapshots (the receiver deletes its own): through the daemon
// when it runs (daemon.Migrator), on the store directly otherwise.
func (e *env) syncOnce(rf remoteFlags, dev, host, prefix string, force bool) (replica.Stats, error) {
	remote := rf.remote(host, e.stderr)
	if e.daemonRunning() {
		m := daemon.Migrator{Client: e.client(), Remote: remote, NoCompress: e.noCompress}
		return m.Round(dev, prefix, force)
	}
	// One open of the store for the snapshot, the send and the pruning:
	// each open reads the whole index and every slot record.
	eng, err := e.openStore(noBackground)
	if err != nil {
		return replica.Stats{}, err
	}
	st, err := e.syncWith(eng, remote, dev, prefix, force)
	if cerr := eng.Close(); err == nil {
		err = cerr
	}
	return st, err
}

// syncWith is syncOnce on the store opened as eng.
func (e *env) syncWith(eng *engine.Engine, remote daemon.Remote, dev, prefix string, force bool) (replica.Stats, error) {
	snap := daemon.SnapName(prefix)
	if err := replicaSnapshot(eng, dev, snap); err != nil {
		return replica.Stats{}, err
	}
	fmt.Fprintf(e.stderr, "snapshot %s@%s taken\n", dev, snap)
	var args []string
	if force {
		args = append(args, "--force")
	}
	rs, err := remote(dev, args...)
	if err != nil {
		return replica.Stats{}, err
	}
	st, err := replica.Send(eng, replica.SendOptions{Snapshot: dev + "@" + snap, BaseAuto: true, Force: force, NoCompress: e.noCompress, Log: e.log}, rs.Out, rs.In)
	rs.In.Close()
	if werr := rs.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("the remote side failed: %w", werr)
	}
	if err != nil {
		return st, err
	}
	if err := e.pruneWith(eng, dev, prefix, snap); err != nil {
		fmt.Fprintf(e.stderr, "blockhash: deleting old snapshots of %s: %s\n", dev, oneLine(err))
	}
	return st, nil
}

// pruneWith deletes dev's snapshots named PREFIX… other than keep, on
// the store opened as eng.
func (e *env) pruneWith(eng *engine.Engine, dev, prefix, keep string) error {
	snaps, err := eng.Snapshots(dev)
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, prefix) && s.Name != keep {
			if err := eng.DeleteDevice(dev+"@"+s.Name, engine.DeleteOptions{Wait: true}); err != nil {
				fmt.Fprintf(e.stderr, "blockhash: deleting the old snapshot %s@%s: %s\n", dev, s.Name, oneLine(err))
			}
		}
	}
	return err
}
