package main

import (
	"fmt"
	"os"
	"path/filepath"

	"blockhash/engine"
	"blockhash/tools/sample"
)

func init() {
	register(&command{name: "demo", usage: "[--size SIZE] [--images N]",
		summary: "generate sample VM images, analyze and import them into the store, show the savings", run: runDemo})
}

func runDemo(e *env, args []string) error {
	fs := newFlags("demo")
	var size sizeFlag
	size.v = 256 << 20
	fs.Var(&size, "size", "size of each sample image")
	images := fs.Int("images", 3, "`N` sample images, 1 to 16")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *images < 1 || *images > 16 || size.v%engine.BlockSize != 0 {
		return usagef("--images 1..16 and --size a multiple of 4096")
	}
	if _, err := os.Stat(filepath.Join(e.store, "superblock")); err != nil {
		if err := engine.Create(e.store, engine.Options{ExtentSize: 256 << 20}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "initialised store %s\n", e.store)
	}
	dir := filepath.Join(e.store, "..", "sample-images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var paths []string
	for i := range *images {
		p := filepath.Join(dir, fmt.Sprintf("vm%d.img", i+1))
		if _, err := os.Stat(p); err != nil {
			if err := sample.Write(p, sample.Spec{Size: size.v, Family: 7, Member: uint64(i), Zero: 0.35, Own: 0.08}); err != nil {
				return err
			}
		}
		paths = append(paths, p)
	}
	fmt.Fprintf(e.stdout, "\n== blockhash analyze (no store needed)\n")
	if err := runAnalyze(e, paths); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n== blockhash import\n")
	for i, p := range paths {
		name := fmt.Sprintf("vm%d", i+1)
		eng, err := e.openStore(noBackground)
		if err != nil {
			return err
		}
		_, err = eng.Device(name)
		eng.Close()
		if err == nil {
			fmt.Fprintf(e.stdout, "%s already imported\n", name)
			continue
		}
		if err := runImport(e, []string{name, p}); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stdout, "\n== blockhash stats\n")
	if err := runStats(e, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n== blockhash fsck\n")
	return runFsck(e, nil)
}
