//go:build rados

package main

import (
	"context"
	"fmt"

	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"blockhash/daemon"
	"blockhash/pool"
	"blockhash/rados"
)

func (rf *radosFlags) config() rados.Config {
	return rados.Config{Pool: *rf.pool, ConfFile: *rf.conf, User: *rf.id, Namespace: *rf.ns, WatchTimeout: pool.DefaultWatchTimeout}
}

// offlinePool answers list, stats, fsck and scrub from the pool itself
// (no host joins it: nothing is written).
func offlinePool(rf *radosFlags, r daemon.Request) (daemon.Response, error) {
	var resp daemon.Response
	c, err := rados.Connect(rf.config())
	if err != nil {
		return resp, err
	}
	defer c.Close()
	switch r.Op {
	case "list":
		devs, err := pool.ListDevices(c)
		if err != nil {
			return resp, err
		}
		for _, d := range devs {
			resp.Devices = append(resp.Devices, daemon.DeviceInfo{ID: -1, Name: d.Name, Size: d.Size, Host: d.Holder, State: "-"})
		}
	case "stats", "fsck":
		rep, err := pool.Inspect(c)
		if err != nil {
			return resp, err
		}
		resp.Pool = &rep
	case "scrub":
		rep, err := pool.Scrub(c)
		if err != nil {
			return resp, err
		}
		resp.PoolScrub = &rep
	default:
		return resp, fmt.Errorf("%w: %s of a pool needs its daemon (blockhash serve --rados)", daemon.ErrInvalid, r.Op)
	}
	return resp, nil
}

func poolInit(e *env, rf *radosFlags, shards uint) error {
	h, err := pool.Init(rf.config(), uint32(shards))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "initialised store in RADOS pool %s (index of %d shards, store %s)\n", *rf.pool, h.IndexShards, h.UUID)
	return nil
}

func poolServe(e *env, rf *radosFlags, o poolServeOptions) error {
	log := e.log
	if log.GetLevel() > zerolog.InfoLevel {
		log = log.Level(zerolog.InfoLevel)
	}
	var exp daemon.Exporter
	if o.noDevices {
		exp = daemon.NoDevices{}
	}
	cfg := rf.config()
	cfg.WatchTimeout = o.watchTimeout
	d, err := daemon.OpenPool(daemon.PoolOptions{Pool: pool.Options{Config: cfg, Host: o.host},
		Socket: e.socket, Exporter: exp, Logger: log, GCEvery: o.gcEvery, MaxLive: o.maxLive})
	if err != nil {
		return err
	}
	if err := d.Listen(); err != nil {
		d.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	p := d.Pool()
	log.Info().Str("pool", *rf.pool).Str("host", p.HostName()).Uint16("host_id", p.HostID()).Str("socket", e.socket).Msg("blockhash daemon ready on a RADOS pool")
	notify := newNotifier()
	if err := notify.send(fmt.Sprintf("READY=1\nSTATUS=serving RADOS pool %s as host %s", *rf.pool, p.HostName())); err != nil {
		log.Warn().Err(err).Msg("cannot tell the service manager the daemon is ready")
	}
	serveErr := d.Serve(ctx)
	notify.send("STOPPING=1\nSTATUS=flushing and letting the devices go")
	log.Info().Msg("stopping: devices flushed, leases let go")
	if err := d.Close(); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return serveErr
}
