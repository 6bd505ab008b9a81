package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"blockhash/daemon"
	"blockhash/pool"
)

// radosFlags name a store in a RADOS pool (issue 12): init, serve and
// the commands that read a store (list, stats, fsck, scrub) take them.
type radosFlags struct {
	pool, conf, id, ns *string
}

func addRadosFlags(fs *flag.FlagSet) *radosFlags {
	return &radosFlags{
		pool: fs.String("rados", "", "the store is in RADOS `POOL` (a Ceph cluster shared by hosts) instead of a directory"),
		conf: fs.String("ceph-conf", "", "the cluster's ceph.conf `FILE` (default: librados' search: $CEPH_CONF, /etc/ceph/ceph.conf)"),
		id:   fs.String("id", "", "with --rados: Ceph client `ID` to connect as, as in client.ID (default admin)"),
		ns:   fs.String("rados-namespace", "", "RADOS `NAMESPACE` of the store in the pool (default: the pool's default namespace)"),
	}
}

// errNoRados is the answer of a build without the rados tag.
var errNoRados = errors.New("this blockhash is built without RADOS support (build it with -tags rados: make build-rados)")

func (rf *radosFlags) set() bool { return rf != nil && *rf.pool != "" }

// poolAnswer answers r for a store in a pool: read from the pool itself
// with --rados (offline: list, stats, fsck, scrub), or by the running
// daemon when it serves a pool. ok is false when neither applies (the
// command goes on with the local store).
func (e *env) poolAnswer(rf *radosFlags, r daemon.Request) (resp daemon.Response, ok bool, err error) {
	if rf.set() {
		resp, err = offlinePool(rf, r)
		return resp, true, err
	}
	c := e.client()
	if _, err := os.Stat(c.Socket); err != nil {
		return resp, false, nil
	}
	ping, err := c.Do(daemon.Request{Op: "ping"})
	if err != nil || ping.Store != "rados" {
		return resp, false, nil
	}
	c.Timeout = 24 * time.Hour // a whole-pool scrub or check reads everything
	resp, err = c.Do(r)
	return resp, true, err
}

func printPoolList(e *env, devs []daemon.DeviceInfo) {
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tHOST\tSTATE\tPATH")
	for _, d := range devs {
		host, path := d.Host, d.Path
		if host == "" {
			host = "-"
		}
		if path == "" {
			path = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, human(d.Size), host, d.State, path)
	}
	tw.Flush()
}

func printPoolStats(e *env, r pool.Report) {
	fmt.Fprintf(e.stdout, "pool store: %d devices, %s raw\n", r.Devices, human(r.LogicalBytes))
	fmt.Fprintf(e.stdout, "  mapped blocks   %d (%s of data)\n", r.MappedBlocks, human(r.MappedBlocks*pool.BlockSize))
	fmt.Fprintf(e.stdout, "  live blocks     %d (distinct stored blocks the maps name)\n", r.LiveBlocks)
	fmt.Fprintf(e.stdout, "  stored blocks   %d in %d packs (%d open), %s\n", r.StoredBlocks, r.Packs, r.OpenPacks, human(int64(r.StoredBlocks)*pool.BlockSize))
	fmt.Fprintf(e.stdout, "  garbage blocks  %d (garbage collection takes them back)\n", r.Garbage)
	fmt.Fprintf(e.stdout, "  index entries   %d\n", r.IndexEntries)
	fmt.Fprintf(e.stdout, "  saved by dedup  %.1f%% of the data\n", r.SavedPercent())
	for _, h := range r.Hosts {
		fmt.Fprintf(e.stdout, "  host            %s\n", h)
	}
}

func poolFsckVerdict(e *env, r pool.Report, asJSON bool) error {
	if asJSON {
		if err := e.printJSON(r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "%d devices, %d mapped blocks, %d stored blocks in %d packs, %d index entries, %d garbage\n",
			r.Devices, r.MappedBlocks, r.StoredBlocks, r.Packs, r.IndexEntries, r.Garbage)
		for _, p := range r.Problems {
			fmt.Fprintln(e.stdout, "  "+p)
		}
	}
	if len(r.Problems) > 0 {
		return fmt.Errorf("found %d problems in the pool", len(r.Problems))
	}
	if !asJSON {
		fmt.Fprintln(e.stdout, "pool is consistent")
	}
	return nil
}

func poolScrubVerdict(e *env, r pool.ScrubReport, asJSON bool) error {
	if asJSON {
		if err := e.printJSON(r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "scrubbed %d blocks (%s)\n", r.Blocks, human(r.Bytes))
		for _, d := range r.Damaged {
			fmt.Fprintln(e.stdout, "  damaged: "+d)
		}
	}
	if len(r.Damaged) > 0 {
		return fmt.Errorf("%d blocks are damaged or lost (listed above)", len(r.Damaged))
	}
	return nil
}

// poolServeOptions are serve's flags for a pool.
type poolServeOptions struct {
	host      string
	noDevices bool
	gcEvery   time.Duration
	maxLive   float64
	// watchTimeout: how long other hosts wait for this one's watch
	// before they take it for dead.
	watchTimeout time.Duration
}
