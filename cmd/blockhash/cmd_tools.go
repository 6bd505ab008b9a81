package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"blockhash/tools/analyze"
	"blockhash/tools/bench"
	"blockhash/tools/sample"
)

func init() {
	register(&command{name: "analyze", usage: "[--json] IMAGE...", summary: "dedup potential of images, without storing them", run: runAnalyze})
	register(&command{name: "sample", usage: "[--size SIZE] [--member N] [--zero FRACTION] FILE", summary: "write a synthetic VM image (members of one family share most blocks)", run: runSample})
	register(&command{name: "bench", usage: "[--json] [--dir DIR] [--size SIZE] [--read-time DURATION] [--index-blocks N] [--device-time DURATION] [--device-size SIZE] [--rados POOL [--ceph-conf FILE] [--id ID] [--rados-namespace NS]]", summary: "measure ingest, reads, index RAM and the device path on this machine", run: runBench})
}

func runAnalyze(e *env, args []string) error {
	fs := newFlags("analyze")
	asJSON := fs.Bool("json", false, "print JSON")
	paths, err := parseArgs(fs, args, -1)
	if err != nil {
		return err
	}
	var total int64
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		total += st.Size()
	}
	bar := newProgress(e.stderr, "analyze", total)
	rows, err := analyze.Analyze(paths, bar.add)
	bar.finish()
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(rows)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "IMAGE\tRAW SIZE\tZERO BLOCKS\tDATA BLOCKS\tUNIQUE\tNEW\tSTORED\tCUMULATIVE RAW\tCUMULATIVE STORED\tSAVED\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%.0f%%\t%s\t%s\t%.1f%%\t\n", r.Image, human(r.RawBytes), r.ZeroBlocks, r.DataBlocks,
			r.UniqueBlocks, r.NewBlocks, r.StoredPct(), human(r.CumRawBytes), human(r.CumStoredBytes), r.CumSavedPct)
	}
	return tw.Flush()
}

func runSample(e *env, args []string) error {
	fs := newFlags("sample")
	var size sizeFlag
	size.v = 256 << 20
	fs.Var(&size, "size", "image size")
	member := fs.Uint64("member", 0, "family member `N`: members share their base blocks, each adds its own")
	zero := fs.Float64("zero", 0.35, "`FRACTION` of zero blocks, 0 to 0.9")
	paths, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if size.v <= 0 || size.v%4096 != 0 || *zero < 0 || *zero > 0.9 {
		return usagef("--size must be a positive multiple of 4096 and --zero between 0 and 0.9")
	}
	return sample.Write(paths[0], sample.Spec{Size: size.v, Family: 7, Member: *member, Zero: *zero, Own: 0.08})
}

func runBench(e *env, args []string) error {
	fs := newFlags("bench")
	asJSON := fs.Bool("json", false, "print JSON")
	dir := fs.String("dir", os.TempDir(), "scratch `DIR`ectory on the disk to measure")
	var size sizeFlag
	size.v = 2 << 30
	fs.Var(&size, "size", "bytes per ingest phase")
	readTime := fs.Duration("read-time", 5*time.Second, "duration of each read phase")
	indexBlocks := fs.Int("index-blocks", 2_000_000, "`N` unique blocks for the index RAM figure")
	deviceTime := fs.Duration("device-time", 3*time.Second, "duration of each device-path pattern (random 4 KiB writes and reads)")
	var deviceSize sizeFlag
	deviceSize.v = 1 << 30
	fs.Var(&deviceSize, "device-size", "logical size of the device-path device and plain file")
	rf := addRadosFlags(fs)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if deviceSize.v < 32*4096 || deviceSize.v%4096 != 0 || *deviceTime <= 0 {
		return usagef("--device-size must be a multiple of 4096, 128 KiB or more, and --device-time positive")
	}
	o := bench.Options{Dir: *dir, IngestBytes: size.v, ReadTime: *readTime, IndexBlocks: *indexBlocks,
		DeviceTime: *deviceTime, DeviceBytes: deviceSize.v, Log: e.stderr}
	if rf.set() {
		return benchPool(e, rf, o, *asJSON)
	}
	res, err := bench.Run(o)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(res)
	}
	fmt.Fprintf(e.stdout, "machine              %d cores, GOMAXPROCS %d, load average %.2f at the start, %.2f at the end\n", res.Cores, res.Procs, res.LoadStart, res.LoadEnd)
	fmt.Fprintf(e.stdout, "unique ingest        %8.0f MB/s   (%s)\n", res.UniqueIngestMBs, human(res.IngestBytes))
	fmt.Fprintf(e.stdout, "duplicate ingest     %8.0f MB/s\n", res.DuplicateIngestMBs)
	fmt.Fprintf(e.stdout, "random 4K reads      %8.0f IOPS   (plain file: %.0f IOPS, ratio %.2f)\n", res.RandomReadIOPS, res.RawRandomReadIOPS, res.ReadRatio)
	fmt.Fprintf(e.stdout, "index RAM            %8.2f bytes per unique block (%d blocks; Go heap of the reopened index: %.2f)\n", res.IndexRAMBytesPerBlock, res.IndexBlocks, res.IndexHeapBytesPerBlock)
	fmt.Fprintf(e.stdout, "index disk           %8.1f bytes per entry\n", res.IndexDiskBytesPerEntry)
	fmt.Fprintf(e.stdout, "SHA-256, 4K blocks   %8.0f MB/s   (%d cores; unique ingest is %.0f%% of it)\n", res.SHA256MBs, res.Cores, 100*res.UniqueIngestMBs/res.SHA256MBs)
	fmt.Fprintf(e.stdout, "device path: random 4 KiB requests, %d in flight, a flush every %d writes, %s device, %s per pattern\n",
		res.Inflight, res.FlushEvery, human(res.DeviceBytes), time.Duration(res.DeviceSeconds*float64(time.Second)))
	fmt.Fprintf(e.stdout, "  device writes      %8.0f IOPS   unique data\n", res.DeviceRandWriteIOPS)
	fmt.Fprintf(e.stdout, "  device writes      %8.0f IOPS   duplicate data\n", res.DeviceRandWriteDupIOPS)
	fmt.Fprintf(e.stdout, "  device reads       %8.0f IOPS   (of the %d blocks written; %d reads of all patterns checked)\n", res.DeviceRandReadIOPS, res.DeviceReadBlocks, res.VerifiedReads)
	fmt.Fprintf(e.stdout, "  plain file writes  %8.0f IOPS   page cache, fdatasync every %d\n", res.FileRandWriteIOPS, res.FlushEvery)
	fmt.Fprintf(e.stdout, "  plain file reads   %8.0f IOPS   page cache\n", res.FileRandReadIOPS)
	if res.FileDirect {
		fmt.Fprintf(e.stdout, "  plain file writes  %8.0f IOPS   O_DIRECT, fdatasync every %d\n", res.FileRandWriteDirectIOPS, res.FlushEvery)
		fmt.Fprintf(e.stdout, "  plain file reads   %8.0f IOPS   O_DIRECT\n", res.FileRandReadDirectIOPS)
	} else {
		fmt.Fprintln(e.stdout, "  plain file O_DIRECT: not supported by this file system, not measured")
	}
	return nil
}
