package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"blockhash/daemon"
	"blockhash/engine"
)

func init() {
	register(&command{name: "stats", usage: "[NAME] [--json] [--rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS]]", summary: "space used and saved, per device and store-wide", run: runStats})
	register(&command{name: "fsck", usage: "[--repair] [--json] [--rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS]]", summary: "check reference counts, the index and every block's digest", run: runFsck})
}

// statsJSON is the JSON form of `blockhash stats`.
type statsJSON struct {
	engine.Stats
	Device *engine.DeviceStats `json:"device,omitempty"`
}

func runStats(e *env, args []string) error {
	fs := newFlags("stats")
	asJSON := fs.Bool("json", false, "print JSON")
	rf := addRadosFlags(fs)
	pos, err := parseArgsRange(fs, args, 0, 1)
	if err != nil {
		return err
	}
	if resp, ok, err := e.poolAnswer(rf, daemon.Request{Op: "stats"}); ok {
		switch {
		case err != nil:
			return err
		case resp.Pool == nil:
			return fmt.Errorf("%w: no pool figures in the answer", daemon.ErrInvalid)
		case len(pos) == 1:
			return usagef("stats of one device of a pool: not yet (blockhash list shows each device)")
		case *asJSON:
			return e.printJSON(resp.Pool)
		}
		printPoolStats(e, *resp.Pool)
		return nil
	}
	s, err := e.storeStats()
	if err != nil {
		return err
	}
	var one *engine.DeviceStats
	if len(pos) == 1 {
		for i := range s.Devices {
			if s.Devices[i].Name == pos[0] {
				one = &s.Devices[i]
			}
		}
		if one == nil {
			return fmt.Errorf("%w: %s", engine.ErrNotFound, pos[0])
		}
	}
	if *asJSON {
		return e.printJSON(statsJSON{Stats: s, Device: one})
	}
	printStats(e, s, one)
	return nil
}

func printStats(e *env, s engine.Stats, one *engine.DeviceStats) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DEVICE\tRAW SIZE\tZERO BLOCKS\tDATA BLOCKS\tUNIQUE BLOCKS\tSHARED BLOCKS\tDATA\t")
	for _, d := range s.Devices {
		if one != nil && d.Name != one.Name {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", d.Name, human(d.LogicalBytes), d.ZeroBlocks, d.DataBlocks, d.UniqueBlocks, d.SharedBlocks, human(int64(d.DataBlocks)*engine.BlockSize))
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "\nstore (%s, %d devices)\n", s.Hash, len(s.Devices))
	fmt.Fprintf(e.stdout, "  raw size         %s\n", human(s.LogicalBytes))
	fmt.Fprintf(e.stdout, "  zero blocks      %d (unwritten or zero: stored as nothing)\n", s.ZeroBlocks)
	fmt.Fprintf(e.stdout, "  data             %s in %d blocks\n", human(s.DataBytes), s.DataBlocks)
	fmt.Fprintf(e.stdout, "  duplicate blocks %d (shared)\n", s.DuplicateBlocks)
	fmt.Fprintf(e.stdout, "  stored blocks    %d\n", s.UniqueBlocks)
	fmt.Fprintf(e.stdout, "  stored size      %s of %s of extents allocated (%.1f%% used, %s free)\n",
		human(s.StoredBytes), human(s.AllocatedBytes), s.UsePercent, human(s.FreeExtentBytes))
	fmt.Fprintf(e.stdout, "  metadata         %s\n", human(s.MetadataBytes))
	if s.DataBytes > 0 {
		fmt.Fprintf(e.stdout, "  saved by dedup   %s, %.1f%% of the data\n", human(s.DedupSavedBytes), s.SavedPercent)
	} else {
		fmt.Fprintf(e.stdout, "  saved by dedup   - (no data written)\n")
	}
	if len(s.Domains) > 0 {
		fmt.Fprintf(e.stdout, "\ndedup domains (blocks are shared only within a domain)\n")
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "DOMAIN\tDEVICES\tDATA BLOCKS\tSTORED BLOCKS\tSAVED\t")
		for _, d := range s.Domains {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f%%\t\n", d.Name, d.Devices, d.DataBlocks, d.StoredBlocks, d.SavedPercent)
		}
		tw.Flush()
	}
	var lost uint64
	for _, d := range s.Devices {
		lost += d.LostBlocks
	}
	if s.DamagedBlocks > 0 || lost > 0 || len(s.OfflineDevices) > 0 {
		fmt.Fprintf(e.stdout, "  DAMAGE           %d damaged stored blocks, %d quarantined device blocks, offline devices: %v (run blockhash fsck)\n",
			s.DamagedBlocks, lost, s.OfflineDevices)
	}
}

func runFsck(e *env, args []string) error {
	fs := newFlags("fsck")
	repair := fs.Bool("repair", false, "rebuild slot records, reference counts and the index; mark damaged blocks; quarantine damaged map entries; rebuild damaged map headers")
	asJSON := fs.Bool("json", false, "print JSON")
	rf := addRadosFlags(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if resp, ok, err := e.poolAnswer(rf, daemon.Request{Op: "fsck"}); ok {
		switch {
		case err != nil:
			return err
		case *repair:
			return usagef("fsck --repair of a pool: not yet (fsck reports)")
		case resp.Pool == nil:
			return fmt.Errorf("%w: no pool report in the answer", daemon.ErrInvalid)
		}
		return poolFsckVerdict(e, *resp.Pool, *asJSON)
	}
	o := readOnly
	o.Check = true
	if *repair {
		o = freeing
		o.Repair = true
	}
	// Through the daemon when it runs (it refuses --repair).
	var rep engine.FsckReport
	resp, err := e.viaDaemonOr(daemon.Request{Op: "fsck", Repair: *repair, ID: -1}, o,
		func(eng *engine.Engine) (err error) {
			rep, err = eng.Fsck(*repair)
			return err
		})
	if err != nil {
		return err
	}
	if resp.Fsck != nil {
		rep = *resp.Fsck
	}
	if *asJSON {
		if err := e.printJSON(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "%d devices, %d mapped blocks, %d slots checked, %d live\n", rep.Devices, rep.MappedBlocks, rep.SlotsChecked, rep.LiveSlots)
		for _, p := range rep.Problems {
			fmt.Fprintln(e.stdout, "  "+p)
		}
		printDamaged(e, rep.Damaged, rep.DamagedBlocks, rep.DamagedTruncated)
	}
	return fsckVerdict(e, rep, *asJSON)
}

// printDamaged lists damaged device blocks like `zpool status -v`.
func printDamaged(e *env, ranges []engine.DamagedRange, blocks uint64, truncated bool) {
	if len(ranges) == 0 {
		return
	}
	fmt.Fprintf(e.stdout, "damaged or lost data (%d device blocks):\n", blocks)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEVICE\tFIRST BLOCK\tBLOCKS\tBYTE OFFSET\tWHY")
	for _, r := range ranges {
		n := fmt.Sprint(r.Blocks)
		if r.Blocks == 0 {
			n = "all"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%s\n", r.Device, r.FirstLBA, n, r.FirstLBA*engine.BlockSize, r.Why)
	}
	tw.Flush()
	if truncated {
		fmt.Fprintln(e.stdout, "  (more ranges left out)")
	}
}

func fsckVerdict(e *env, rep engine.FsckReport, asJSON bool) error {
	say := func(s string) {
		if !asJSON {
			fmt.Fprintln(e.stdout, s)
		}
	}
	switch {
	case rep.OK():
		say("store is consistent")
		return nil
	case rep.Repaired && !rep.DataLost():
		say("problems repaired")
		return nil
	case rep.Repaired:
		return fmt.Errorf("repaired metadata, but %d device blocks are lost or damaged (listed above): write them again or restore them", rep.DamagedBlocks)
	case rep.Consistent():
		return fmt.Errorf("store is consistent, but %d device blocks are lost or damaged (listed above): write them again or restore them", rep.DamagedBlocks)
	default:
		return fmt.Errorf("found problems (run blockhash fsck --repair)")
	}
}

// storeStats asks the running daemon, or opens the store when none runs.
func (e *env) storeStats() (engine.Stats, error) {
	c := e.client()
	if _, err := os.Stat(c.Socket); err == nil && c.Running() {
		resp, err := c.Do(daemon.Request{Op: "stats"})
		if err != nil {
			return engine.Stats{}, err
		}
		return *resp.Stats, nil
	}
	eng, err := e.openStore(readOnly)
	if err != nil {
		return engine.Stats{}, err
	}
	defer eng.Close()
	return eng.Stats()
}
