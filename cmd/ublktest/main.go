// Command ublktest is a small ublk test server over the blockhash/ublk
// package, for testing against the real kernel driver:
//
//	ublktest add -n ID [-q QUEUES=1] [-d DEPTH=128] [--lbs 512|4096] [--size 256M]
//	             [--backend mem | file=PATH] [--stats FILE] [-v]
//	ublktest recover -n ID [--backend mem | file=PATH] [--stats FILE] [-v]
//	ublktest del -n ID
//	ublktest features
//	ublktest stamp init|write|check ...   (the power-cut verifier: stamp_cmd.go)
//
// add and recover print exactly "/dev/ublkbID" on stdout once the device is
// live, serve until SIGTERM/SIGINT (or until the device is stopped from
// outside), then tear down cleanly (drain, STOP_DEV, DEL_DEV) and exit 0.
// --stats FILE rewrites FILE atomically every 100 ms and at exit with the
// backend's operation counters. Errors: one line on stderr, exit status 1.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"blockhash/ublk"

	"github.com/rs/zerolog"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "ublktest: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage:
  ublktest add -n ID [-q QUEUES] [-d DEPTH] [--lbs 512|4096] [--size SIZE] [--backend mem|file=PATH] [--user-copy] [--stats FILE] [--cpuprofile FILE] [-v]
  ublktest recover -n ID [--backend mem|file=PATH] [--stats FILE] [--cpuprofile FILE] [-v]
  ublktest del -n ID
  ublktest features
  ublktest stamp init|write|check ...`

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	if cmd == "stamp" {
		return runStamp(args, stdout)
	}
	fs := flag.NewFlagSet("ublktest "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	id := fs.Int("n", -1, "device id")
	queues := fs.Int("q", 1, "queues")
	depth := fs.Int("d", 128, "queue depth")
	lbs := fs.Int("lbs", 512, "logical block size")
	sizeStr := fs.String("size", "256M", "device size")
	backendSpec := fs.String("backend", "mem", "mem or file=PATH")
	statsPath := fs.String("stats", "", "stats file")
	verbose := fs.Bool("v", false, "debug logging to stderr")
	userCopy := fs.Bool("user-copy", false, "add: create the device with UBLK_F_USER_COPY")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the serving to FILE")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v\n%s", err, usage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), usage)
	}
	level := zerolog.WarnLevel
	if *verbose {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: true}).Level(level).With().Timestamp().Logger()

	switch cmd {
	case "features", "del", "add", "recover":
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	ctrl, err := ublk.OpenControlLogger(log)
	if err != nil {
		return err
	}
	defer ctrl.Close()

	switch cmd {
	case "features":
		f, err := ctrl.Features()
		if err != nil {
			return err
		}
		for _, n := range ublk.FeatureNames(f) {
			fmt.Fprintln(stdout, n)
		}
		return nil
	case "del":
		if *id < 0 {
			return errors.New("del needs -n ID")
		}
		return ctrl.Delete(*id)
	}
	if *id < 0 {
		return fmt.Errorf("%s needs -n ID", cmd)
	}

	var size int64
	if cmd == "add" {
		if size, err = parseSize(*sizeStr); err != nil {
			return err
		}
	} else {
		if _, err = ctrl.DeviceInfo(*id); err != nil {
			return err
		}
		if size, _, err = ctrl.DeviceSize(*id); err != nil {
			return err
		}
	}
	backend, stats, closeBackend, err := openBackend(*backendSpec, size)
	if err != nil {
		return err
	}
	defer closeBackend()

	var dev *ublk.Device
	if cmd == "add" {
		dev, err = ublk.New(ctrl, ublk.Config{
			ID: *id, Queues: *queues, Depth: *depth, Size: size, LogicalBlockSize: *lbs, UserCopy: *userCopy, Logger: &log,
		}, backend)
	} else {
		dev, err = ublk.Recover(ctrl, *id, backend, ublk.RecoverOptions{Logger: &log})
	}
	if err != nil {
		return err
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	if err := dev.Start(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, dev.BlockPath())

	stopStats := make(chan struct{})
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		if *statsPath == "" {
			return
		}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			writeStats(*statsPath, stats(), log)
			select {
			case <-t.C:
			case <-stopStats:
				return
			}
		}
	}()

	select {
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("stopping")
	case <-dev.Done():
		log.Warn().Msg("device stopped from outside")
	}
	err = dev.Stop()
	close(stopStats)
	<-statsDone
	if *statsPath != "" {
		writeStats(*statsPath, stats(), log)
	}
	return err
}

// openBackend builds the backend named by spec.
func openBackend(spec string, size int64) (ublk.Backend, func() ublk.Stats, func(), error) {
	switch {
	case spec == "mem":
		m := ublk.NewMemBackend(size)
		return m, m.Stats, func() {}, nil
	case strings.HasPrefix(spec, "file="):
		f, err := ublk.OpenFileBackend(strings.TrimPrefix(spec, "file="), size)
		if err != nil {
			return nil, nil, nil, err
		}
		return f, f.Stats, func() { f.Close() }, nil
	}
	return nil, nil, nil, fmt.Errorf("unknown backend %q (want mem or file=PATH)", spec)
}

// parseSize parses "4096", "64K", "256M", "1G", "2T" (binary units).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "i"))
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q (want e.g. 256M, 1G)", s)
	}
	return n * mult, nil
}

// writeStats rewrites path atomically (temp file + rename).
func writeStats(path string, s ublk.Stats, log zerolog.Logger) {
	text := fmt.Sprintf("reads %d\nwrites %d\nflushes %d\ndiscards %d\nwrite_zeroes %d\nfua_writes %d\n",
		s.Reads, s.Writes, s.Flushes, s.Discards, s.WriteZeroes, s.FUAWrites)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err == nil {
		_, err = tmp.WriteString(text)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("writing stats")
	}
}
