package main

import (
	"errors"
	"fmt"

	"blockhash/engine"
)

func init() {
	register(&command{name: "init", usage: "[--hash sha256|sha1] [--verify] [--extent-size SIZE] [--if-missing] [--recover-superblock] | --rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS] [--index-shards N]",
		summary: "create an empty store (sha1 implies --verify), or rebuild a lost superblock", run: runInit})
}

func runInit(e *env, args []string) error {
	fs := newFlags("init")
	hash := fs.String("hash", "sha256", "strong `HASH` of the content keys: sha256 or sha1 (sha1 implies --verify)")
	verify := fs.Bool("verify", false, "byte-compare a block before sharing it")
	var extent sizeFlag
	extent.v = 1 << 30
	fs.Var(&extent, "extent-size", "size of each preallocated extent file")
	recoverSB := fs.Bool("recover-superblock", false, "rebuild the lost superblock of the store in this directory")
	ifMissing := fs.Bool("if-missing", false, "do nothing (exit 0) when a store exists already (for a service's start)")
	rf := addRadosFlags(fs)
	shards := fs.Uint("index-shards", 0, "with --rados: `N` index shards, a power of two (default 64: about 37 GiB of unique data; more for a bigger pool)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if rf.set() {
		return poolInit(e, rf, *shards)
	}
	h, err := engine.ParseHash(*hash)
	if err != nil {
		return usagef("%v", err)
	}
	// SHA-1 collisions can be built: a sha1 store always byte-compares.
	v := *verify || h == engine.SHA1
	if *recoverSB {
		// The extent size and the hash come from the store's files; the
		// flags count only for a store that holds no block yet.
		sb, err := engine.RecoverSuperblock(e.store, engine.Options{Hash: h, Verify: v, ExtentSize: extent.v})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "rebuilt the superblock of %s (hash %s, verify %v, extents of %s); run blockhash fsck\n",
			e.store, sb.Hash, sb.Verify, human(sb.ExtentSize))
		return nil
	}
	if err := engine.Create(e.store, engine.Options{Hash: h, Verify: v, ExtentSize: extent.v}); err != nil {
		if *ifMissing && errors.Is(err, engine.ErrExists) {
			fmt.Fprintf(e.stdout, "store %s exists already\n", e.store)
			return nil
		}
		return err
	}
	fmt.Fprintf(e.stdout, "initialised store %s (hash %s, verify %v, extents of %s)\n", e.store, h, v, human(extent.v))
	return nil
}
