package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"blockhash/blockstore"
)

const stampUsage = `usage:
  ublktest stamp init -state FILE (-blocks N | -size SIZE)
  ublktest stamp write -dev DEV -state FILE -log FILE [-jobs 8] [-batch 16] [-sync-every 4] [-dup 25] [-count 0] [-seed 1]
  ublktest stamp check -dev DEV -state FILE -log FILE
The power-cut verifier. write puts 4 KiB stamp blocks at random blocks of DEV
(O_DIRECT), fsyncs every -sync-every batches and appends each write (before
issuing it) and each returned fsync to the log; -count 0 writes until killed.
check reads every block and fails unless each holds the write its last
acknowledged flush covers or a later (unflushed) one: never an older write,
zeros or garbage. On success it rewrites FILE with what it read (the base
of the next log) and prints a summary; the log must be removed before the
next write (write refuses an existing log).`

// runStamp runs `ublktest stamp ...` (no ublk control device needed).
func runStamp(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(stampUsage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("ublktest stamp "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	devPath := fs.String("dev", "", "block device (or file)")
	statePath := fs.String("state", "", "state file")
	logPath := fs.String("log", "", "log file")
	blocks := fs.Int64("blocks", 0, "init: 4 KiB blocks")
	sizeStr := fs.String("size", "", "init: size")
	jobs := fs.Int("jobs", 8, "write: concurrent writes")
	batch := fs.Int("batch", 16, "write: writes per batch")
	syncEvery := fs.Int("sync-every", 4, "write: batches per fsync")
	dup := fs.Int("dup", 25, "write: percent of shared-pattern writes")
	count := fs.Int("count", 0, "write: blocks to write (0: until killed)")
	seed := fs.Int64("seed", 1, "write: random seed")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v\n%s", err, stampUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), stampUsage)
	}
	need := func(names ...string) error {
		for _, n := range names {
			if fs.Lookup(n).Value.String() == "" {
				return fmt.Errorf("stamp %s needs -%s\n%s", cmd, n, stampUsage)
			}
		}
		return nil
	}
	switch cmd {
	case "init":
		if err := need("state"); err != nil {
			return err
		}
		if *sizeStr != "" {
			size, err := parseSize(*sizeStr)
			if err != nil {
				return err
			}
			*blocks = size / stampBlockSize
		}
		if *blocks <= 0 {
			return fmt.Errorf("stamp init needs -blocks N or -size SIZE\n%s", stampUsage)
		}
		return newStampState(*blocks).save(*statePath)
	case "write":
		if err := need("dev", "state", "log"); err != nil {
			return err
		}
		st, err := loadStampState(*statePath)
		if err != nil {
			return err
		}
		dev, err := openStampDevice(*devPath, os.O_RDWR)
		if err != nil {
			return err
		}
		defer dev.Close()
		lf, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("stamp log (check and remove an old one first): %w", err)
		}
		defer lf.Close()
		w, err := newStampWriter(dev, lf, st, *jobs, *batch, *syncEvery, *dup, *seed)
		if err != nil {
			return err
		}
		err = w.run(*count)
		fmt.Fprintf(stdout, "stamp write: %d writes, %d flushes\n", w.writes, w.flushes)
		return err
	case "check":
		if err := need("dev", "state", "log"); err != nil {
			return err
		}
		st, err := loadStampState(*statePath)
		if err != nil {
			return err
		}
		log, err := os.ReadFile(*logPath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		dev, err := openStampDevice(*devPath, os.O_RDONLY)
		if err != nil {
			return err
		}
		defer dev.Close()
		r, next, err := checkStamps(dev, blockstore.AlignedBuf(256*stampBlockSize), st, log)
		if r != nil {
			for _, p := range r.problems {
				fmt.Fprintln(stdout, "stamp check: "+p)
			}
			fmt.Fprintln(stdout, "stamp check: "+r.String())
		}
		if err != nil {
			return err
		}
		return next.save(*statePath)
	}
	return fmt.Errorf("unknown stamp command %q\n%s", cmd, stampUsage)
}

// openStampDevice opens path with O_DIRECT, or without it where the file
// system refuses (tmpfs, in tests).
func openStampDevice(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		f, err = os.OpenFile(path, flag, 0)
	}
	return f, err
}
