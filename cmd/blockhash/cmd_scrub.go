package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"blockhash/daemon"
	"blockhash/engine"
)

func init() {
	register(&command{name: "scrub", usage: "[--rate MB/s] [--json] [--rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS]]", summary: "verify every stored block (through the daemon when it runs), mark and list damaged ones", run: runScrub})
}

func runScrub(e *env, args []string) error {
	fs := newFlags("scrub")
	rate := fs.Float64("rate", 0, "`MB/s`: read at most this many megabytes (10^6 bytes) per second; 0: no bound")
	asJSON := fs.Bool("json", false, "print JSON")
	rf := addRadosFlags(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if resp, ok, err := e.poolAnswer(rf, daemon.Request{Op: "scrub"}); ok {
		switch {
		case err != nil:
			return err
		case resp.PoolScrub == nil:
			return fmt.Errorf("%w: no scrub report in the answer", daemon.ErrInvalid)
		}
		return poolScrubVerdict(e, *resp.PoolScrub, *asJSON)
	}
	if *rate < 0 {
		return usagef("--rate must not be negative")
	}
	bps := int64(*rate * 1e6)
	var rep engine.ScrubReport
	c := e.client()
	if _, err := os.Stat(c.Socket); err == nil && c.Running() {
		c.Timeout = 30 * 24 * time.Hour // a scrub of a large store at a low rate takes days
		resp, err := c.Do(daemon.Request{Op: "scrub", Rate: bps})
		if err != nil {
			return err
		}
		if resp.Scrub == nil {
			return errors.New("the daemon sent no scrub report")
		}
		rep = *resp.Scrub
	} else {
		eng, err := e.openStore(noBackground)
		if err != nil {
			return err
		}
		defer eng.Close()
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		var bar *progress
		if !*asJSON {
			bar = newProgress(e.stderr, "scrub", int64(eng.ScrubSlots())*engine.BlockSize)
		}
		var last int64
		rep, err = eng.Scrub(ctx, engine.ScrubOptions{Rate: bps, Progress: func(p engine.ScrubProgress) {
			if bar != nil {
				n := int64(p.SlotsScanned) * engine.BlockSize
				bar.add(n - last)
				last = n
			}
		}})
		if bar != nil {
			bar.finish()
		}
		if err != nil {
			return err
		}
	}
	if *asJSON {
		if err := e.printJSON(rep); err != nil {
			return err
		}
	} else {
		state := "scrub done"
		if rep.Canceled {
			state = "scrub canceled"
		}
		fmt.Fprintf(e.stdout, "%s: %d of %d slots scanned, %d blocks checked (%s read in %.1f s); %d newly damaged, %d damaged in all\n",
			state, rep.SlotsScanned, rep.Slots, rep.BlocksChecked, human(rep.BytesRead), rep.Seconds, rep.NewDamaged, rep.DamagedSlots)
		if rep.Skipped > 0 {
			fmt.Fprintf(e.stdout, "%d blocks skipped: their slot records are unreadable (run blockhash fsck)\n", rep.Skipped)
		}
		printDamaged(e, rep.Damaged, rep.DamagedBlocks, rep.Truncated)
	}
	switch {
	case rep.DamagedBlocks > 0:
		return fmt.Errorf("%d device blocks are damaged or lost (listed above): reads of them fail until their content is written again", rep.DamagedBlocks)
	case rep.Canceled:
		return errors.New("scrub canceled")
	}
	return nil
}
