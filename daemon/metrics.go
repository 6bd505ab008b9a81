package daemon

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"blockhash/engine"
)

// ioOp is a kind of guest request, as the metrics name it.
type ioOp int

const (
	opRead ioOp = iota
	opWrite
	opFlush
	opDiscard
	opWriteZeroes
	nOps
)

// opNames are the values of the op label.
var opNames = [nOps]string{"read", "write", "flush", "discard", "write_zeroes"}

// Latency buckets: guest requests from 10 µs to about 5 s, commits from
// 1 ms to about 33 s, a commit's synced steps from 100 µs to about 6.6 s
// (doubling each).
var (
	requestBuckets = prometheus.ExponentialBuckets(10e-6, 2, 20)
	commitBuckets  = prometheus.ExponentialBuckets(1e-3, 2, 16)
	syncBuckets    = prometheus.ExponentialBuckets(100e-6, 2, 17)
)

// metrics are a daemon's Prometheus metrics, in a registry of their own:
// each served device's requests (deviceMetrics, counted by its
// guestBackend), the store's figures computed at scrape time
// (storeCollector), the engine's commits (it is the engine's Observer),
// and the Go runtime's and the process's.
//
// Concurrency: the vectors are safe for concurrent use; a device's
// counters and histograms are resolved once when it starts serving, so
// a request only adds to them (client_golang's counters and histograms
// are lock-free atomics). Nothing else here is mutable.
type metrics struct {
	reg *prometheus.Registry

	// reqVec and byteVec count requests and bytes by op (reads_total,
	// read_bytes_total, ...; nil: not counted), by device.
	reqVec  [nOps]*prometheus.CounterVec
	byteVec [nOps]*prometheus.CounterVec
	errors  *prometheus.CounterVec   // device, op
	latency *prometheus.HistogramVec // device, op

	commit prometheus.Histogram
	sync   *prometheus.HistogramVec // step
}

var _ engine.Observer = (*metrics)(nil)

// newMetrics makes the metrics of a daemon serving eng's devices.
func newMetrics(eng *engine.Engine) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "blockhash", Subsystem: "device", Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	m.reqVec = [nOps]*prometheus.CounterVec{
		opRead:        counter("reads_total", "Read requests served to the guest (failed ones too).", "device"),
		opWrite:       counter("writes_total", "Write requests served to the guest, FUA writes included (failed ones too).", "device"),
		opFlush:       counter("flushes_total", "Flush requests served to the guest (failed ones too).", "device"),
		opDiscard:     counter("discards_total", "Discard requests served to the guest (failed ones too).", "device"),
		opWriteZeroes: counter("write_zeroes_total", "Write-zeroes requests served to the guest (failed ones too).", "device"),
	}
	m.byteVec = [nOps]*prometheus.CounterVec{
		opRead:        counter("read_bytes_total", "Bytes read by the guest (successful requests).", "device"),
		opWrite:       counter("written_bytes_total", "Bytes written by the guest (successful requests).", "device"),
		opDiscard:     counter("discarded_bytes_total", "Bytes discarded by the guest (successful requests).", "device"),
		opWriteZeroes: counter("zeroed_bytes_total", "Bytes zeroed by the guest's write-zeroes requests (successful ones).", "device"),
	}
	m.errors = counter("errors_total", "Requests that failed with an error returned to the guest, by op.", "device", "op")
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "blockhash", Subsystem: "device", Name: "request_duration_seconds",
		Help: "Time from a request reaching the daemon to its answer, by op (a paused device's wait included).", Buckets: requestBuckets},
		[]string{"device", "op"})
	m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "blockhash", Subsystem: "store", Name: "commit_duration_seconds",
		Help: "Duration of the store's commits that wrote a record (its _count is the number of commits).", Buckets: commitBuckets})
	m.sync = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "blockhash", Subsystem: "store", Name: "commit_sync_duration_seconds",
		Help: "Duration of a commit's synced steps (fsync latency), by step: data, journal, pages, slots, index, journal_reset.", Buckets: syncBuckets},
		[]string{"step"})
	m.reg.MustRegister(m.latency, m.commit, m.sync, newStoreCollector(eng),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Commit implements engine.Observer.
func (m *metrics) Commit(d time.Duration) { m.commit.Observe(d.Seconds()) }

// Sync implements engine.Observer.
func (m *metrics) Sync(step string, d time.Duration) {
	m.sync.WithLabelValues(step).Observe(d.Seconds())
}

// device returns the instruments of the device called name (the same
// ones again for a device that restarts: its counters go on).
func (m *metrics) device(name string) *deviceMetrics {
	dm := &deviceMetrics{}
	for op := range nOps {
		dm.requests[op] = m.reqVec[op].WithLabelValues(name)
		if m.byteVec[op] != nil {
			dm.bytes[op] = m.byteVec[op].WithLabelValues(name)
		}
		dm.errors[op] = m.errors.WithLabelValues(name, opNames[op])
		dm.latency[op] = m.latency.WithLabelValues(name, opNames[op])
	}
	return dm
}

// forget drops the metrics of a device no longer served.
func (m *metrics) forget(name string) {
	l := prometheus.Labels{"device": name}
	for op := range nOps {
		m.reqVec[op].Delete(l)
		if m.byteVec[op] != nil {
			m.byteVec[op].Delete(l)
		}
	}
	m.errors.DeletePartialMatch(l)
	m.latency.DeletePartialMatch(l)
}

// deviceMetrics are one served device's instruments, by op. A nil
// *deviceMetrics counts nothing.
type deviceMetrics struct {
	requests [nOps]prometheus.Counter
	bytes    [nOps]prometheus.Counter // nil for flush
	errors   [nOps]prometheus.Counter
	latency  [nOps]prometheus.Observer
}

// begin is the start of a request (the zero time when not counted).
func (m *deviceMetrics) begin() time.Time {
	if m == nil {
		return time.Time{}
	}
	return time.Now()
}

// done counts a request of op that began at start and moved n bytes
// (counted only when it succeeded).
func (m *deviceMetrics) done(op ioOp, start time.Time, n int64, err error) {
	if m == nil {
		return
	}
	m.requests[op].Inc()
	switch {
	case err != nil:
		m.errors[op].Inc()
	case n > 0 && m.bytes[op] != nil:
		m.bytes[op].Add(float64(n))
	}
	m.latency[op].Observe(time.Since(start).Seconds())
}
