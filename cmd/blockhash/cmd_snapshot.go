package main

import (
	"fmt"
	"os"
	"time"

	"blockhash/daemon"
	"blockhash/engine"
)

// Snapshots, clones, rollbacks, deletions and diffs (and create and fsck:
// cmd_create.go, cmd_stats.go) go through the daemon
// when it runs (it refuses to roll back or delete what it serves) and open
// the store directly otherwise (refused likewise for devices the daemon
// remembers as served). The output is the same either way.

func init() {
	register(&command{name: "snapshot", usage: "DEV SNAP", summary: "take a read-only, point-in-time snapshot DEV@SNAP of a device (served or not; freeze its file system first for a consistent one)", run: runSnapshot})
	register(&command{name: "clone", usage: "SRC[@SNAP] DST", summary: "make a new writable device sharing every block of a device or snapshot", run: runClone})
	register(&command{name: "rollback", usage: "DEV SNAP", summary: "return a device to its snapshot (the device must not be served)", run: runRollback})
	register(&command{name: "diff", usage: "DEV[@A] DEV[@B] [--json]", summary: "list the block ranges that differ between two snapshots or devices", run: runDiff})
	register(&command{name: "delete", usage: "NAME|DEV@SNAP [--recursive]", summary: "delete a device (with --recursive, its snapshots too) or a snapshot, and release what only it held (not while served)", run: runDelete})
}

// viaDaemonOr sends r to the daemon if one runs, and otherwise runs
// offline on the store opened with o.
func (e *env) viaDaemonOr(r daemon.Request, o engine.Options, offline func(*engine.Engine) error) (daemon.Response, error) {
	if c, ok := e.runningDaemon(); ok {
		if r.Op == "fsck" {
			c.Timeout = 30 * 24 * time.Hour // it reads every stored block
		}
		return c.Do(r)
	}
	return daemon.Response{}, e.offline(o, offline)
}

// runningDaemon returns the client of the daemon when one runs.
func (e *env) runningDaemon() (daemon.Client, bool) {
	c := e.client()
	_, err := os.Stat(c.Socket)
	return c, err == nil && c.Running()
}

func runSnapshot(e *env, args []string) error {
	pos, err := parseArgs(newFlags("snapshot"), args, 2)
	if err != nil {
		return err
	}
	if _, err := e.viaDaemonOr(daemon.Request{Op: "snapshot", Name: pos[0], Snap: pos[1], ID: -1}, noBackground,
		func(eng *engine.Engine) error { return eng.Snapshot(pos[0], pos[1]) }); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "snapshot %s@%s taken\n", pos[0], pos[1])
	return nil
}

func runClone(e *env, args []string) error {
	pos, err := parseArgs(newFlags("clone"), args, 2)
	if err != nil {
		return err
	}
	if _, err := e.viaDaemonOr(daemon.Request{Op: "clone", Name: pos[0], Target: pos[1], ID: -1}, noBackground,
		func(eng *engine.Engine) error { return eng.Clone(pos[0], pos[1]) }); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cloned %s to %s\n", pos[0], pos[1])
	return nil
}

func runRollback(e *env, args []string) error {
	pos, err := parseArgs(newFlags("rollback"), args, 2)
	if err != nil {
		return err
	}
	// Offline, the device's old content is released before the command
	// returns (Close waits for it).
	if _, err := e.viaDaemonOr(daemon.Request{Op: "rollback", Name: pos[0], Snap: pos[1], ID: -1}, freeing,
		func(eng *engine.Engine) error {
			if err := daemon.NotServed(e.store, pos[0]); err != nil {
				return err
			}
			return eng.Rollback(pos[0], pos[1])
		}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "rolled %s back to %s@%s\n", pos[0], pos[0], pos[1])
	return nil
}

func runDelete(e *env, args []string) error {
	fs := newFlags("delete")
	recursive := fs.Bool("recursive", false, "delete the device's snapshots with it")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	name := pos[0]
	if _, err := e.viaDaemonOr(daemon.Request{Op: "delete", Name: name, Recursive: *recursive, ID: -1}, freeing, func(eng *engine.Engine) error {
		names := []string{name}
		for _, n := range eng.Devices() {
			if dev, snap := engine.SplitName(n); snap != "" && dev == name {
				names = append(names, n)
			}
		}
		if err := daemon.NotServed(e.store, names...); err != nil {
			return err
		}
		return eng.DeleteDevice(name, engine.DeleteOptions{Recursive: *recursive, Wait: true})
	}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted %s\n", name)
	return nil
}

func runDiff(e *env, args []string) error {
	fs := newFlags("diff")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	var rs []engine.Range
	resp, err := e.viaDaemonOr(daemon.Request{Op: "diff", Name: pos[0], Target: pos[1], ID: -1}, readOnly,
		func(eng *engine.Engine) (err error) {
			rs, err = eng.Diff(pos[0], pos[1])
			return err
		})
	if err != nil {
		return err
	}
	if resp.Ranges != nil {
		rs = resp.Ranges
	}
	if *asJSON {
		if rs == nil {
			rs = []engine.Range{}
		}
		return e.printJSON(rs)
	}
	var blocks uint64
	for _, r := range rs {
		fmt.Fprintf(e.stdout, "%d\t%d\n", r.Start*engine.BlockSize, r.Blocks*engine.BlockSize)
		blocks += r.Blocks
	}
	fmt.Fprintf(e.stderr, "%d ranges, %d blocks (%s) differ\n", len(rs), blocks, human(int64(blocks)*engine.BlockSize))
	return nil
}

// offline opens the store with o, runs fn and closes the store (an error
// of Close counts: it commits what fn did).
func (e *env) offline(o engine.Options, fn func(*engine.Engine) error) error {
	eng, err := e.openStore(o)
	if err != nil {
		return err
	}
	if err := fn(eng); err != nil {
		eng.Close()
		return err
	}
	return eng.Close()
}
