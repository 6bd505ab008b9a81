package main

import (
	"fmt"

	"blockhash/engine"
)

func init() {
	register(&command{name: "init", usage: "[--hash sha256|sha1] [--verify] [--extent-size SIZE]",
		summary: "create an empty store (sha1 implies --verify)", run: runInit})
}

func runInit(e *env, args []string) error {
	fs := newFlags("init")
	hash := fs.String("hash", "sha256", "strong hash: sha256 or sha1 (sha1 implies --verify)")
	verify := fs.Bool("verify", false, "byte-compare a block before sharing it")
	var extent sizeFlag
	extent.v = 1 << 30
	fs.Var(&extent, "extent-size", "size of each preallocated extent file")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	h, err := engine.ParseHash(*hash)
	if err != nil {
		return usagef("%v", err)
	}
	// SHA-1 collisions can be built: a sha1 store always byte-compares.
	v := *verify || h == engine.SHA1
	if err := engine.Create(e.store, engine.Options{Hash: h, Verify: v, ExtentSize: extent.v}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "initialised store %s (hash %s, verify %v, extents of %s)\n", e.store, h, v, human(extent.v))
	return nil
}
