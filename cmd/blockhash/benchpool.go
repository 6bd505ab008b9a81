//go:build rados

package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"blockhash/pool"
	"blockhash/tools/bench"
)

// poolBenchResult is bench --rados: the device path on a local store and
// on a throw-away store in the pool, in one run.
type poolBenchResult struct {
	Local bench.DeviceResult `json:"local"`
	Pool  bench.DeviceResult `json:"rados"`
}

// benchPool runs the device patterns on a local store in --dir, then on
// a store of its own in the pool (a fresh RADOS namespace, removed
// after), and prints both.
func benchPool(e *env, rf *radosFlags, o bench.Options, asJSON bool) error {
	var res poolBenchResult
	var err error
	fmt.Fprintln(e.stderr, "local store:")
	if res.Local, err = bench.LocalDevicePath(o.Dir, o); err != nil {
		return err
	}
	cfg := rf.config()
	var ns [6]byte
	rand.Read(ns[:])
	cfg.Namespace = "blockhash-bench-" + hex.EncodeToString(ns[:])
	if _, err := pool.Init(cfg, 0); err != nil {
		return err
	}
	defer pool.Destroy(cfg)
	p, err := pool.Open(pool.Options{Config: cfg, Host: "bench"})
	if err != nil {
		return err
	}
	defer p.Close()
	var devs [3]*pool.Device
	for i, n := range []string{"randwrite", "randwrite-dup", "pool"} {
		size := o.DeviceBytes
		if n == "pool" {
			size = 64 * pool.BlockSize
		}
		if err := p.Create(n, size); err != nil {
			return err
		}
		if devs[i], err = p.Open(n); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "RADOS pool %s (namespace %s):\n", cfg.Pool, cfg.Namespace)
	res.Pool = bench.DeviceResult{DeviceBytes: res.Local.DeviceBytes, DeviceSeconds: res.Local.DeviceSeconds, Inflight: res.Local.Inflight, FlushEvery: res.Local.FlushEvery}
	if err := bench.DevicePatterns(devs[0], devs[1], devs[2], o, &res.Pool); err != nil {
		return err
	}
	if err := p.Close(); err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(res)
	}
	l, r := res.Local, res.Pool
	fmt.Fprintf(e.stdout, "device path: random 4 KiB requests, %d in flight, a flush every %d writes, %s devices, %.0f s per pattern\n",
		l.Inflight, l.FlushEvery, human(l.DeviceBytes), l.DeviceSeconds)
	fmt.Fprintf(e.stdout, "                         local store   RADOS pool   pool/local\n")
	row := func(name string, a, b float64) {
		fmt.Fprintf(e.stdout, "  %-22s %8.0f IOPS %8.0f IOPS   %.2f\n", name, a, b, b/a)
	}
	row("writes, unique data", l.DeviceRandWriteIOPS, r.DeviceRandWriteIOPS)
	row("writes, duplicates", l.DeviceRandWriteDupIOPS, r.DeviceRandWriteDupIOPS)
	row("reads", l.DeviceRandReadIOPS, r.DeviceRandReadIOPS)
	return nil
}
