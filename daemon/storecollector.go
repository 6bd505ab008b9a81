package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"blockhash/engine"
)

// storeCollector turns the store's figures (engine.Stats, the index's
// counters) into metrics when Prometheus scrapes: nothing of it runs on
// the I/O path. A scrape reads the store-wide figures only
// (engine.StoreStats: no walk of the volumes' maps), so its cost does not
// grow with the data.
type storeCollector struct {
	eng *engine.Engine

	logical, data, zero, stored, shared, allocated, free, metadata *prometheus.Desc
	ratio, devices, damaged, indexEntries, indexRAM, lookups       *prometheus.Desc
	up                                                             *prometheus.Desc
}

func newStoreCollector(eng *engine.Engine) *storeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName("blockhash", "store", name), help, labels, nil)
	}
	return &storeCollector{eng: eng,
		logical:      d("logical_bytes", "Size of the store's devices (snapshots not counted)."),
		data:         d("data_bytes", "Non-zero data the devices hold (their written blocks that are not zero)."),
		zero:         d("zero_bytes", "Unwritten or zero blocks of the devices: they take no space."),
		stored:       d("stored_bytes", "Block data stored: the distinct (unique) blocks, each once."),
		shared:       d("shared_bytes", "Data of the devices that shares a stored block with other data: what dedup saves."),
		allocated:    d("allocated_bytes", "Space allocated to extent files."),
		free:         d("free_extent_bytes", "Space allocated to extent files and holding no block."),
		metadata:     d("metadata_bytes", "Index, maps, slot records, journal and superblock on disk."),
		ratio:        d("dedup_ratio", "Non-zero data the devices hold over block data stored (1 when nothing is stored)."),
		devices:      d("devices", "Volumes of the store, by kind (device or snapshot).", "kind"),
		damaged:      d("damaged_blocks", "Stored blocks known to fail their digest."),
		indexEntries: prometheus.NewDesc("blockhash_index_entries", "Blocks in the content index.", nil, nil),
		indexRAM:     prometheus.NewDesc("blockhash_index_filter_bytes", "RAM of the index's level-one filter.", nil, nil),
		lookups: prometheus.NewDesc("blockhash_index_lookups_total",
			"Index lookups by where they were answered: filter (new, in RAM), overlay (uncommitted), cache, disk_hit, disk_miss (LevelDB).",
			[]string{"answer"}, nil),
		up: d("stats_up", "1 when the store's figures could be computed at this scrape, else 0 (the other store metrics are then missing)."),
	}
}

// Describe implements prometheus.Collector.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.logical, c.data, c.zero, c.stored, c.shared, c.allocated, c.free, c.metadata,
		c.ratio, c.devices, c.damaged, c.indexEntries, c.indexRAM, c.lookups, c.up} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	is := c.eng.IndexStats()
	counter := func(answer string, v uint64) {
		ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, float64(v), answer)
	}
	counter("filter", is.FilterMiss)
	counter("overlay", is.Overlay)
	counter("cache", is.CacheHits)
	counter("disk_hit", is.DiskHits)
	counter("disk_miss", is.DiskReads-min(is.DiskReads, is.DiskHits))
	s, err := c.eng.StoreStats()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.logical, float64(s.LogicalBytes))
	gauge(c.data, float64(s.DataBytes))
	gauge(c.zero, float64(s.ZeroBlocks)*engine.BlockSize)
	gauge(c.stored, float64(s.StoredBytes))
	gauge(c.shared, float64(s.DedupSavedBytes))
	gauge(c.allocated, float64(s.AllocatedBytes))
	gauge(c.free, float64(s.FreeExtentBytes))
	gauge(c.metadata, float64(s.MetadataBytes))
	ratio := 1.0
	if s.StoredBytes > 0 {
		ratio = float64(s.DataBytes) / float64(s.StoredBytes)
	}
	gauge(c.ratio, ratio)
	kinds := map[string]int{"device": 0, "snapshot": 0}
	for _, d := range s.Devices {
		kinds[d.Kind]++
	}
	for k, n := range kinds {
		gauge(c.devices, float64(n), k)
	}
	gauge(c.damaged, float64(s.DamagedBlocks))
	gauge(c.indexEntries, float64(s.IndexEntries))
	gauge(c.indexRAM, float64(s.IndexRAMBytes))
}
