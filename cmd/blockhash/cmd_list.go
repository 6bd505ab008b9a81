package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"blockhash/daemon"
	"blockhash/engine"
)

func init() {
	register(&command{name: "list", usage: "[--json] [--rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS]]", summary: "list the store's devices, snapshots and clones, and how each is served", run: runList})
}

func runList(e *env, args []string) error {
	fs := newFlags("list")
	asJSON := fs.Bool("json", false, "print JSON")
	rf := addRadosFlags(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if resp, ok, err := e.poolAnswer(rf, daemon.Request{Op: "list"}); ok {
		if err != nil {
			return err
		}
		if *asJSON {
			return e.printJSON(resp.Devices)
		}
		printPoolList(e, resp.Devices)
		return nil
	}
	entries, err := e.listEntries()
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(entries)
	}
	return printList(e, entries)
}

// listEntries asks the running daemon (its store's figures and the
// devices it serves), or reads the store and the daemon's state file
// when none runs: one list either way (daemon.ListEntry).
func (e *env) listEntries() ([]daemon.ListEntry, error) {
	c := e.client()
	if _, err := os.Stat(c.Socket); err == nil && c.Running() {
		resp, err := c.Do(daemon.Request{Op: "stats"})
		if err != nil {
			return nil, err
		}
		if resp.Stats == nil {
			return nil, fmt.Errorf("%w: no store figures in the daemon's answer", daemon.ErrInvalid)
		}
		return daemon.ListEntries(*resp.Stats, resp.Devices), nil
	}
	eng, err := e.openStore(readOnly)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	s, err := eng.Stats()
	if err != nil {
		return nil, err
	}
	entries, err := daemon.StoreList(e.store, s)
	if err != nil {
		// The store's volumes are listed still: none shown as served.
		e.log.Warn().Err(err).Msg("devices the daemon serves not shown")
	}
	return entries, nil
}

// printList prints the list as a table: the volume's figures (DATA,
// UNIQUE and SHARED sizes of its data blocks; USED, what deleting a
// snapshot frees), then where it is served (DEVICE, STATE, MODE: "-" when
// it is not). A receive's or deletion's progress ends its row.
func printList(e *env, entries []daemon.ListEntry) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	// A DOMAIN column when some volume is in a dedup domain of its own.
	domains := false
	for _, v := range entries {
		domains = domains || (v.Domain != "" && v.Domain != engine.DefaultDomain)
	}
	dom := func(v daemon.ListEntry) string {
		if !domains {
			return ""
		}
		if v.Domain == "" {
			return "-\t"
		}
		return v.Domain + "\t"
	}
	if domains {
		fmt.Fprint(tw, "DOMAIN\t")
	}
	fmt.Fprintln(tw, "NAME\tKIND\tSIZE\tDATA\tUNIQUE\tSHARED\tUSED\tORIGIN\tDEVICE\tSTATE\tMODE")
	blocks := func(n uint64) string { return human(int64(n) * 4096) }
	for _, v := range entries {
		switch v.Kind {
		case "receiving":
			fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t%s\n", dom(v), v.Name, v.Kind, human(v.Size), blocks(v.DataBlocks), v.Progress)
			continue
		case "deleting":
			fmt.Fprintf(tw, "%s%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n", dom(v), v.Name, v.Kind, v.Progress)
			continue
		}
		size, data, unique, shared, used, origin := "-", "-", "-", "-", "-", "-"
		if v.Kind != "offline" {
			size, data, unique, shared = human(v.Size), blocks(v.DataBlocks), blocks(v.UniqueBlocks), blocks(v.SharedBlocks)
		}
		if v.Kind == "snapshot" {
			used = blocks(v.UsedBlocks)
		}
		if v.Origin != "" {
			origin = v.Origin
		}
		dev, state, mode := "-", "-", "-"
		if s := v.Served; s != nil {
			dev, state, mode = s.Path, s.State, "rw"
			if dev == "" {
				dev = fmt.Sprintf("(ublkb%d)", s.ID) // no kernel device up
			}
			if s.Paused {
				state += ",paused"
			}
			if s.ReadOnly {
				mode = "ro"
			}
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dom(v), v.Name, v.Kind, size, data, unique, shared, used, origin, dev, state, mode)
	}
	return tw.Flush()
}
