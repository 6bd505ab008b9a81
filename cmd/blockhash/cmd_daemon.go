package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"blockhash/daemon"
)

func init() {
	register(&command{name: "serve", usage: "[--socket PATH] [--stop-devices-on-exit] [--no-devices] [--metrics-addr ADDR] | --rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS] [--host NAME] [--gc-every DURATION] [--watch-timeout DURATION]",
		summary: "run the daemon in the foreground: serve the store's devices as /dev/ublkbN (SIGTERM keeps them for the next serve)",
		help: "Run the daemon in the foreground (root only): take over or serve again the devices it served before, " +
			"listen on the control socket for add, del, list, stats and the other commands, and serve each device's " +
			"I/O from the store. SIGTERM or SIGINT finish the I/O in progress, flush the store and exit 0, leaving " +
			"every /dev/ublkbN in place (its new I/O waits) for the next serve to take over, unless " +
			"--stop-devices-on-exit is given. With --metrics-addr (for example 127.0.0.1:9477) it serves Prometheus " +
			"metrics over HTTP at /metrics on that address: each device's requests, bytes, errors and latency, the " +
			"store's space and dedup figures, its commits and their fsyncs.",
		run: runServe})
	register(&command{name: "add", usage: "NAME|DEV@SNAP [--size SIZE] [--read-only] [--domain NAME] [-n ID] [-q QUEUES] [-d DEPTH] [--logical-block-size 512|4096]",
		summary: "serve a device (created if missing) or a snapshot (always read-only) and print its /dev/ublkbN",
		help: "Ask the running daemon to serve a device of the store as /dev/ublkbID and print that path. A device " +
			"that does not exist is created with --size; an existing one is served as it is. A snapshot DEV@SNAP " +
			"is always served read-only.",
		run: runAdd})
	register(&command{name: "del", usage: "NAME | -n ID | --all|-a [--keep-data]", summary: "stop serving devices and delete them (--keep-data keeps them in the store)",
		help: "Ask the running daemon to stop serving a device (by NAME or by -n ID) or every device (--all), " +
			"remove its /dev/ublkbN even while it is in use, and delete it from the store with its data, unless " +
			"--keep-data is given. A device that has snapshots is only stopped with --keep-data.",
		run: runDel})
	register(&command{name: "status", usage: "", summary: "tell whether the daemon runs (exit 0) and how many devices it serves", run: runStatus})
	register(&command{name: "recover", usage: "-n ID", summary: "serve again a device whose serving stopped", run: runRecover})
}

func (e *env) client() daemon.Client { return daemon.Client{Socket: e.socket} }

func runServe(e *env, args []string) error {
	fs := newFlags("serve")
	stopDevs := fs.Bool("stop-devices-on-exit", false, "remove the kernel devices when stopping (default: leave them, their I/O waiting, for the next serve to take over)")
	noDevs := fs.Bool("no-devices", false, "serve the store (replication, snapshots, stats) but no block devices: for a replica host without ublk_drv")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://`ADDR`/metrics, ADDR being host:port like 127.0.0.1:9477 (default: off)")
	rf := addRadosFlags(fs)
	host := fs.String("host", "", "with --rados: this host's `NAME` in the pool (default: the machine's host name)")
	gcEvery := fs.Duration("gc-every", 0, "with --rados: collect the pool's garbage every `DURATION`, led by this host (default: only by blockhash gc)")
	watchTimeout := fs.Duration("watch-timeout", 5*time.Second, "with --rados: a host silent this long is taken for dead by the others (fenced before they take its devices); every host of a pool should give the same")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if rf.set() {
		if *metricsAddr != "" || *stopDevs {
			return usagef("--metrics-addr and --stop-devices-on-exit are for a local store (a pool daemon always stops its devices)")
		}
		if *watchTimeout < time.Second {
			return usagef("--watch-timeout must be 1s or more")
		}
		return poolServe(e, rf, poolServeOptions{host: *host, noDevices: *noDevs, gcEvery: *gcEvery, maxLive: 0.5, watchTimeout: *watchTimeout})
	}
	log := e.log
	if log.GetLevel() > zerolog.InfoLevel {
		log = log.Level(zerolog.InfoLevel) // lifecycle events; never per I/O
	}
	var exp daemon.Exporter
	if *noDevs {
		exp = daemon.NoDevices{}
	}
	d, err := daemon.Open(daemon.Options{Store: e.store, Socket: e.socket, Logger: log, Exporter: exp,
		QueueProcs:  os.Getenv("GOMAXPROCS") == "", // see setIOProcs
		StopDevices: *stopDevs})
	if err != nil {
		return err
	}
	if err := d.Listen(); err != nil {
		d.Close()
		return err
	}
	if *metricsAddr != "" {
		if err := d.ListenMetrics(*metricsAddr); err != nil {
			d.Close()
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n := len(d.List())
	log.Info().Str("store", e.store).Str("socket", e.socket).Int("devices", n).Msg("blockhash daemon ready")
	// The devices it remembered are served and the control socket
	// listens: a systemd unit of Type=notify starts what depends on it now.
	notify := newNotifier()
	if err := notify.send(fmt.Sprintf("READY=1\nSTATUS=serving %d devices from %s", n, e.store)); err != nil {
		log.Warn().Err(err).Msg("cannot tell the service manager the daemon is ready")
	}
	serveErr := d.Serve(ctx)
	notify.send("STOPPING=1\nSTATUS=draining the devices and flushing the store")
	if *stopDevs {
		log.Info().Msg("stopping: draining and removing the devices, flushing the store")
	} else {
		log.Info().Msg("stopping: draining the devices, flushing the store; the devices stay for the next serve")
	}
	if err := d.Close(); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return serveErr
}

func runAdd(e *env, args []string) error {
	fs := newFlags("add")
	var size sizeFlag
	fs.Var(&size, "size", "device size (required for a new device), like 20G")
	id := fs.Int("n", -1, "serve it as /dev/ublkb`ID`; -1: the first free number")
	queues := fs.Int("q", 1, "number of hardware `QUEUES` (one ublk queue thread each)")
	depth := fs.Int("d", 128, "queue `DEPTH`: requests in flight per queue")
	lbs := fs.Int("logical-block-size", 512, "logical block `SIZE` the guest sees: 512 or 4096")
	ro := fs.Bool("read-only", false, "serve the device read-only (implied for a snapshot DEV@SNAP)")
	domain := domainFlag(fs)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	resp, err := e.client().Do(daemon.Request{Op: "add", Name: pos[0], Size: size.v, ID: *id, Queues: *queues, Depth: *depth, LBS: *lbs, ReadOnly: *ro, Domain: *domain})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, resp.Devices[0].Path)
	return nil
}

func runDel(e *env, args []string) error {
	fs := newFlags("del")
	id := fs.Int("n", -1, "the device served as /dev/ublkb`ID`")
	all := fs.Bool("all", false, "every served device")
	a := fs.Bool("a", false, "same as --all")
	keep := fs.Bool("keep-data", false, "only stop serving: keep the device and its data in the store")
	pos, err := parseArgsRange(fs, args, 0, 1)
	if err != nil {
		return err
	}
	r := daemon.Request{Op: "del", ID: *id, All: *all || *a, KeepData: *keep}
	if len(pos) == 1 {
		r.Name = pos[0]
	}
	if n := btoi(r.Name != "") + btoi(r.ID >= 0) + btoi(r.All); n != 1 {
		return usagef("give exactly one of NAME, -n ID or --all")
	}
	resp, err := e.client().Do(r)
	if err != nil {
		return err
	}
	for _, d := range resp.Devices {
		what := "deleted"
		if r.KeepData {
			what = "stopped (data kept)"
		}
		fmt.Fprintf(e.stdout, "%s: /dev/ublkb%d %s\n", d.Name, d.ID, what)
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func runRecover(e *env, args []string) error {
	fs := newFlags("recover")
	id := fs.Int("n", -1, "the device that was served as /dev/ublkb`ID` (required)")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *id < 0 {
		return usagef("-n ID is required")
	}
	resp, err := e.client().Do(daemon.Request{Op: "recover", ID: *id})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %s %s\n", resp.Devices[0].Name, resp.Devices[0].Path, resp.Devices[0].State)
	return nil
}

func runStatus(e *env, args []string) error {
	if _, err := parseArgs(newFlags("status"), args, 0); err != nil {
		return err
	}
	resp, err := e.client().Do(daemon.Request{Op: "list"})
	if err != nil {
		return err
	}
	running := 0
	for _, d := range resp.Devices {
		if d.State == "running" {
			running++
		}
	}
	fmt.Fprintf(e.stdout, "daemon running on %s: %d devices, %d running\n", e.socket, len(resp.Devices), running)
	return nil
}
