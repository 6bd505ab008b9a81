package main

import (
	"fmt"

	"blockhash/daemon"
)

func init() {
	register(&command{name: "gc", usage: "[--max-live F] [--json]",
		summary: "collect the garbage of a store in a RADOS pool (through its daemon)",
		help: "Ask the running daemon, which serves a RADOS pool, to lead one garbage collection of the pool: " +
			"blocks no device map and no host references are removed in two rounds that every live host " +
			"acknowledges (safe while other hosts write), then packs at most --max-live live are compacted " +
			"(their live blocks copied, the old packs removed once every host follows). A host that does not " +
			"answer stops the collection: fence it (blockhash fence HOST) or take its devices first.",
		run: runGC})
	register(&command{name: "fence", usage: "HOST",
		summary: "fence a dead host of a RADOS pool (blocklist it) so that collections stop waiting for it",
		help: "Ask the running daemon, which serves a RADOS pool, to blocklist HOST's client in the cluster and " +
			"record it fenced: its later operations are refused by every OSD, and garbage collection no longer " +
			"waits for it. Its devices stay leased to the fenced client until another host adds them (which " +
			"takes them). Only for a host that is gone: a fenced host must restart its daemon to serve again.",
		run: runFence})
}

func runGC(e *env, args []string) error {
	fs := newFlags("gc")
	maxLive := fs.Float64("max-live", 0.5, "compact packs at most this fraction live (0: no compaction)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *maxLive < 0 || *maxLive >= 1 {
		return usagef("--max-live must be in [0, 1)")
	}
	resp, ok, err := e.poolAnswer(&radosFlags{pool: new(string)}, daemon.Request{Op: "gc", MaxLive: *maxLive})
	if !ok {
		return fmt.Errorf("%w: gc needs a daemon serving a RADOS pool (blockhash serve --rados POOL); a local store frees space as it goes", daemon.ErrInvalid)
	}
	if err != nil {
		return err
	}
	if resp.GC == nil {
		return fmt.Errorf("%w: no collection figures in the answer", daemon.ErrInvalid)
	}
	if *asJSON {
		return e.printJSON(resp.GC)
	}
	g := resp.GC
	fmt.Fprintf(e.stdout, "collected: %d candidates, %d referenced again, %d dead, %d packs deleted; compacted %d packs (%d blocks copied)\n",
		g.Candidates, g.Resurrected, g.Dead, g.PacksDeleted, g.Compacted, g.Copied)
	return nil
}

func runFence(e *env, args []string) error {
	pos, err := parseArgs(newFlags("fence"), args, 1)
	if err != nil {
		return err
	}
	_, ok, err := e.poolAnswer(&radosFlags{pool: new(string)}, daemon.Request{Op: "fence", Name: pos[0]})
	if !ok {
		return fmt.Errorf("%w: fence needs a daemon serving a RADOS pool (blockhash serve --rados POOL)", daemon.ErrInvalid)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "host %s fenced\n", pos[0])
	return nil
}
