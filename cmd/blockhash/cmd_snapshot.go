package main

import (
	"fmt"

	"blockhash/engine"
)

func init() {
	register(&command{name: "snapshot", usage: "DEV SNAP", summary: "take a read-only, point-in-time snapshot DEV@SNAP of a device", run: runSnapshot})
	register(&command{name: "clone", usage: "SRC[@SNAP] DST", summary: "make a new writable device sharing every block of a device or snapshot", run: runClone})
	register(&command{name: "rollback", usage: "DEV SNAP", summary: "return a device to its snapshot (the device must not be served)", run: runRollback})
	register(&command{name: "diff", usage: "DEV[@A] DEV[@B] [--json]", summary: "list the block ranges that differ between two snapshots or devices", run: runDiff})
}

func runSnapshot(e *env, args []string) error {
	pos, err := parseArgs(newFlags("snapshot"), args, 2)
	if err != nil {
		return err
	}
	eng, err := e.openStore(noBackground)
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := eng.Snapshot(pos[0], pos[1]); err != nil {
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
	eng, err := e.openStore(noBackground)
	if err != nil {
		return err
	}
	defer eng.Close()
	if err := eng.Clone(pos[0], pos[1]); err != nil {
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
	eng, err := e.openStore(freeing)
	if err != nil {
		return err
	}
	if err := eng.Rollback(pos[0], pos[1]); err != nil {
		eng.Close()
		return err
	}
	// The device's old content is released before the command returns.
	if err := eng.Close(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "rolled %s back to %s@%s\n", pos[0], pos[0], pos[1])
	return nil
}

func runDiff(e *env, args []string) error {
	fs := newFlags("diff")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	eng, err := e.openStore(readOnly)
	if err != nil {
		return err
	}
	defer eng.Close()
	rs, err := eng.Diff(pos[0], pos[1])
	if err != nil {
		return err
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
