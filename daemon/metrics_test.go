package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"blockhash/engine"
)

// scrape gets addr's /metrics and parses it with Prometheus's text
// parser; raw is the text as served.
func scrape(t *testing.T, d *Daemon) (fams map[string]*dto.MetricFamily, raw []byte) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", d.MetricsAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s: %s", resp.Status, raw)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err = p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v\n%s", err, raw)
	}
	return fams, raw
}

// sample is the metric of family name whose labels are all of labels
// (name=value pairs); nil if there is none.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value is a counter's or gauge's value (NaN when missing).
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	m := sample(fams, name, labels...)
	switch {
	case m == nil:
		return math.NaN()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return math.NaN()
}

// count is a histogram's sample count (-1 when missing).
func count(fams map[string]*dto.MetricFamily, name string, labels ...string) int64 {
	m := sample(fams, name, labels...)
	if m == nil || m.Histogram == nil {
		return -1
	}
	return int64(m.Histogram.GetSampleCount())
}

// The metrics move by exactly the I/O done through a device's backend:
// requests, bytes and errors by op, latency histogram counts; the store's
// gauges are engine.Stats's figures; each commit is counted with its
// synced steps. The text served parses with Prometheus's parser (and
// passes promtool check metrics when promtool is installed).
func TestMetricsCountIO(t *testing.T) {
	d, _, k := serving(t)
	if err := d.ListenMetrics("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	info, err := d.Add(Request{Name: "vm", Size: 8 << 20, ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	be := k.backend(info.ID)
	before, _ := scrape(t, d)
	if v := value(before, "blockhash_device_writes_total", "device", "vm"); v != 0 {
		t.Fatalf("a new device's writes_total is %v, want 0", v)
	}
	commitsBefore := count(before, "blockhash_store_commit_duration_seconds")

	const writes, reads, flushes = 37, 11, 3
	block := make([]byte, 4096)
	for i := range writes {
		clear(block)
		copy(block, fmt.Sprintf("block %d", i%20)) // 20 distinct blocks
		if _, err := be.WriteAt(block, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 8192)
	for i := range reads {
		if _, err := be.ReadAt(buf, int64(i)*8192); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := be.ReadAt(buf, 8<<20); err == nil { // past the end
		t.Fatal("a read past the end succeeded")
	}
	for range flushes {
		if err := be.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := be.Discard(0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := be.WriteZeroes(4096, 8192); err != nil {
		t.Fatal(err)
	}
	if err := be.Flush(); err != nil {
		t.Fatal(err)
	}

	after, raw := scrape(t, d)
	moved := func(name string, labels ...string) float64 {
		return value(after, name, labels...) - value(before, name, labels...)
	}
	for _, c := range []struct {
		name  string
		want  float64
		label []string
	}{
		{"blockhash_device_writes_total", writes, nil},
		{"blockhash_device_written_bytes_total", writes * 4096, nil},
		{"blockhash_device_reads_total", reads + 1, nil},
		{"blockhash_device_read_bytes_total", reads * 8192, nil},
		{"blockhash_device_flushes_total", flushes + 1, nil},
		{"blockhash_device_discards_total", 1, nil},
		{"blockhash_device_discarded_bytes_total", 4096, nil},
		{"blockhash_device_write_zeroes_total", 1, nil},
		{"blockhash_device_zeroed_bytes_total", 8192, nil},
		{"blockhash_device_errors_total", 1, []string{"op", "read"}},
		{"blockhash_device_errors_total", 0, []string{"op", "write"}},
		{"blockhash_device_errors_total", 0, []string{"op", "flush"}},
	} {
		labels := append([]string{"device", "vm"}, c.label...)
		if got := moved(c.name, labels...); got != c.want {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.label, got, c.want)
		}
	}
	for op, want := range map[string]int64{"read": reads + 1, "write": writes, "flush": flushes + 1, "discard": 1, "write_zeroes": 1} {
		if got := count(after, "blockhash_device_request_duration_seconds", "device", "vm", "op", op); got != want {
			t.Errorf("latency histogram of %s counts %d requests, want %d", op, got, want)
		}
	}
	// Four flushes, two of them after changes (the writes; the discard
	// and zeroing): two commits, each with its synced steps (a flush
	// with nothing to commit is no commit).
	if got := count(after, "blockhash_store_commit_duration_seconds") - commitsBefore; got != 2 {
		t.Errorf("%d commits counted, want 2", got)
	}
	for _, step := range []string{engine.SyncData, engine.SyncJournal, engine.SyncIndex, engine.SyncJournalReset} {
		if got := count(after, "blockhash_store_commit_sync_duration_seconds", "step", step); got < 1 {
			t.Errorf("sync step %s counted %d times", step, got)
		}
	}

	st, err := d.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.DataBlocks != writes-3 || st.UniqueBlocks == 0 || st.DuplicateBlocks == 0 {
		t.Fatalf("unexpected store figures %+v", st)
	}
	for name, want := range map[string]float64{
		"blockhash_store_logical_bytes":     float64(st.LogicalBytes),
		"blockhash_store_data_bytes":        float64(st.DataBytes),
		"blockhash_store_zero_bytes":        float64(st.ZeroBlocks * engine.BlockSize),
		"blockhash_store_stored_bytes":      float64(st.StoredBytes),
		"blockhash_store_shared_bytes":      float64(st.DedupSavedBytes),
		"blockhash_store_allocated_bytes":   float64(st.AllocatedBytes),
		"blockhash_store_free_extent_bytes": float64(st.FreeExtentBytes),
		"blockhash_store_dedup_ratio":       float64(st.DataBytes) / float64(st.StoredBytes),
		"blockhash_index_entries":           float64(st.IndexEntries),
		"blockhash_store_stats_up":          1,
	} {
		if got := value(after, name); got != want {
			t.Errorf("%s = %v, want %v (engine.Stats)", name, got, want)
		}
	}
	if got := value(after, "blockhash_store_devices", "kind", "device"); got != 1 {
		t.Errorf("blockhash_store_devices{kind=device} = %v, want 1", got)
	}
	is := d.eng.IndexStats()
	lookups := 0.0
	for _, a := range []string{"filter", "overlay", "cache", "disk_hit", "disk_miss"} {
		lookups += value(after, "blockhash_index_lookups_total", "answer", a)
	}
	if want := float64(is.FilterMiss + is.Overlay + is.CacheHits + is.DiskReads); lookups != want || lookups < writes {
		t.Errorf("index lookups %v, want %v (and at least one per write)", lookups, want)
	}

	// A device no longer served has no metrics.
	if _, err := d.Del(Request{Name: "vm", ID: -1, KeepData: true}); err != nil {
		t.Fatal(err)
	}
	gone, _ := scrape(t, d)
	if m := sample(gone, "blockhash_device_writes_total", "device", "vm"); m != nil {
		t.Errorf("metrics of a device no longer served: %v", m)
	}
	if m := sample(gone, "blockhash_device_errors_total", "device", "vm"); m != nil {
		t.Errorf("error metrics of a device no longer served: %v", m)
	}

	promtool(t, raw)
}

// promtool runs `promtool check metrics` on the text when promtool is
// installed (Debian: apt-get install prometheus); its findings fail the
// test.
func promtool(t *testing.T, raw []byte) {
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: not checked")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if dir := os.Getenv("BLOCKHASH_METRICS_SAMPLE"); dir != "" {
		os.WriteFile(filepath.Join(dir, "metrics.txt"), raw, 0o644)
	}
}

// The metrics server stops with the daemon: its address no longer
// answers once Close returned.
func TestMetricsServerStopsWithDaemon(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	if err := d.ListenMetrics("127.0.0.1:0"); err != nil {
		d.Close()
		t.Fatal(err)
	}
	addr := d.MetricsAddr().String()
	if err := d.ListenMetrics("127.0.0.1:0"); err == nil {
		t.Error("a second ListenMetrics succeeded")
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatal("metrics still served after Close")
	}
}

// An address that cannot be listened on fails ListenMetrics at once.
func TestListenMetricsBadAddress(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	for _, addr := range []string{"not an address", "127.0.0.1:99999"} {
		if err := d.ListenMetrics(addr); err == nil {
			t.Errorf("ListenMetrics(%q) succeeded", addr)
		}
	}
	if d.MetricsAddr() != nil {
		t.Error("a failed ListenMetrics left an address")
	}
}

// Requests on several queues at once while Prometheus scrapes: every one
// is counted (run under -race: the counting takes no lock and races with
// nothing).
func TestMetricsParallelIO(t *testing.T) {
	d, _, k := serving(t)
	if err := d.ListenMetrics("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	info, err := d.Add(Request{Name: "vm", Size: 8 << 20, ID: -1})
	if err != nil {
		t.Fatal(err)
	}
	be := k.backend(info.ID)
	const queues, perQueue = 4, 64
	errs := make(chan error, queues)
	for q := range queues {
		go func() {
			block := make([]byte, 4096)
			for i := range perQueue {
				block[0], block[1] = byte(q), byte(i)
				if _, err := be.WriteAt(block, int64(q*perQueue+i)*4096); err != nil {
					errs <- err
					return
				}
				if _, err := be.ReadAt(block, int64(q*perQueue+i)*4096); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 3 {
		scrape(t, d)
	}
	for range queues {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	fams, _ := scrape(t, d)
	for _, name := range []string{"blockhash_device_writes_total", "blockhash_device_reads_total"} {
		if got := value(fams, name, "device", "vm"); got != queues*perQueue {
			t.Errorf("%s = %v, want %d", name, got, queues*perQueue)
		}
	}
	if got := count(fams, "blockhash_device_request_duration_seconds", "device", "vm", "op", "write"); got != queues*perQueue {
		t.Errorf("write latency histogram counts %d, want %d", got, queues*perQueue)
	}
}

// A client that half-closes its connection once its request is sent (as
// busybox nc does at the end of its input) still gets the metrics: the
// request's context is cancelled then, and a timeout wrapper answered
// that with an empty 503.
func TestMetricsHalfClosedClient(t *testing.T) {
	dir, k := setup(t)
	d := open(t, dir, k)
	defer d.Close()
	if err := d.ListenMetrics("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", d.MetricsAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: blockhash\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("blockhash_store_stats_up 1")) {
		t.Fatalf("%s, body: %.200s", resp.Status, body)
	}
}

// BenchmarkDeviceMetrics is what counting costs a request (its begin and
// done: a clock read, two atomic adds, a histogram observation), from
// every core at once on one device.
func BenchmarkDeviceMetrics(b *testing.B) {
	m := newMetrics(nil).device("vm")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := m.begin()
			m.done(opWrite, start, 4096, nil)
		}
	})
}
