package main

import (
	"fmt"
	"text/tabwriter"

	"blockhash/engine"
)

func init() {
	register(&command{name: "list", usage: "[--json]", summary: "list the store's devices, snapshots and clones (and, while the daemon runs, the devices it serves)", run: runList})
}

func runList(e *env, args []string) error {
	fs := newFlags("list")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if ok, err := daemonList(e, *asJSON); ok {
		return err
	}
	eng, err := e.openStore(readOnly)
	if err != nil {
		return err
	}
	defer eng.Close()
	s, err := eng.Stats()
	if err != nil {
		return err
	}
	if *asJSON {
		if s.Devices == nil {
			return e.printJSON([]any{})
		}
		return e.printJSON(s.Devices)
	}
	return printVolumes(e, s)
}

// printVolumes prints the store's devices, snapshots and clones, and the
// deleted volumes whose space is still being released.
func printVolumes(e *env, s engine.Stats) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tID\tSIZE\tDATA BLOCKS\tZERO BLOCKS\tUSED\tORIGIN")
	for _, d := range s.Devices {
		origin, used := d.Origin, "-"
		if origin == "" {
			origin = "-"
		}
		if d.Kind == "snapshot" {
			used = human(int64(d.UsedBlocks) * 4096)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%s\t%s\n", d.Name, d.Kind, d.ID, human(d.LogicalBytes), d.DataBlocks, d.ZeroBlocks, used, origin)
	}
	for _, v := range s.Receiving {
		fmt.Fprintf(tw, "%s\treceiving\t-\t%s\t%d\t-\t-\t%s\n", v.Device, human(v.Size), v.DataBlocks, "a receive under way or interrupted (rerun it to finish)")
	}
	for _, v := range s.Deleting {
		fmt.Fprintf(tw, "%s\tdeleting\t-\t-\t-\t-\t-\t%d of %d map tables left\n", v.Name, v.TablesLeft, v.Tables)
	}
	return tw.Flush()
}
