package daemon

import (
	"blockhash/engine"
	"blockhash/pool"
)

// The socket protocol: the client sends one Request as JSON, the daemon
// answers with one Response and closes the connection.

// Request is one command to the daemon.
type Request struct {
	Op       string `json:"op"` // add, del, list, recover, stats, ping, scrub, snapshot, clone, rollback, delete, diff, send, receive, pause, resume, invalidate, create, fsck, import, export
	Name     string `json:"name,omitempty"`
	Size     int64  `json:"size,omitempty"` // 0: the existing device's size; import: the image's size (0: unknown)
	ID       int    `json:"id"`             // -1: any (add) or none (del)
	Queues   int    `json:"queues,omitempty"`
	Depth    int    `json:"depth,omitempty"`
	LBS      int    `json:"logical_block_size,omitempty"`
	All      bool   `json:"all,omitempty"`
	KeepData bool   `json:"keep_data,omitempty"`
	Rate     int64  `json:"rate,omitempty"`      // scrub: bytes per second
	ReadOnly bool   `json:"read_only,omitempty"` // add: serve read-only (a snapshot always is)
	// Snap is the snapshot of snapshot and rollback (Name is the device).
	Snap string `json:"snap,omitempty"`
	// Target is clone's new device and diff's second volume (Name is the
	// source, or the first volume).
	Target    string `json:"target,omitempty"`
	Recursive bool   `json:"recursive,omitempty"` // delete: a device's snapshots too
	// send and receive (replica.go): the connection carries the stream
	// after the daemon's first answer.
	Base  string `json:"base,omitempty"`  // send: the base snapshot's name
	Auto  bool   `json:"auto,omitempty"`  // send: the newest snapshot both hold is the base
	Force bool   `json:"force,omitempty"` // send, receive: replace what the receiver has
	// Live lets a receive replace a device while it is served (the
	// destination of a migration, not yet in use); Serve starts serving
	// the device once received.
	Live  bool `json:"live,omitempty"`
	Serve bool `json:"serve,omitempty"`
	// Replica: a snapshot taken to be sent, refused for a device that
	// cannot be replicated (engine.Device.Replicable).
	Replica bool `json:"replica,omitempty"`
	// NoCompress: send blocks as they are (replica.SendOptions).
	NoCompress bool `json:"no_compress,omitempty"`
	// import and export (importexport.go): the connection carries the
	// raw bytes after the daemon's first answer. From says what an import
	// reads ("image disk.img", "standard input") for its messages; Sparse
	// skips the all-zero chunks of an import (a converted image's holes)
	// instead of writing them.
	From   string `json:"from,omitempty"`
	Sparse bool   `json:"sparse,omitempty"`
	Repair bool   `json:"repair,omitempty"` // fsck: refused while the daemon runs
	// Domain is the dedup domain of a device add, create or import makes
	// (an existing device must be in it); "": the default, or any.
	Domain string `json:"domain,omitempty"`
	// MaxLive: gc compacts packs at most this fraction live (0: none).
	MaxLive float64 `json:"max_live,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	Error   string              `json:"error,omitempty"`
	Devices []DeviceInfo        `json:"devices,omitempty"`
	Stats   *engine.Stats       `json:"stats,omitempty"`
	Scrub   *engine.ScrubReport `json:"scrub,omitempty"`
	Ranges  []engine.Range      `json:"ranges,omitempty"` // diff
	Fsck    *engine.FsckReport  `json:"fsck,omitempty"`
	// Size is the size of a device created, the length of an export's
	// stream (first answer), and the bytes an import wrote (last answer,
	// with the device's figures in Devices).
	Size int64 `json:"size,omitempty"`
	// A daemon serving a RADOS pool (pooldaemon.go) answers stats and
	// fsck with Pool, scrub with PoolScrub, gc with GC.
	// Store is "rados" in the ping answer of a daemon serving a pool.
	Store     string            `json:"store,omitempty"`
	Pool      *pool.Report      `json:"pool,omitempty"`
	PoolScrub *pool.ScrubReport `json:"pool_scrub,omitempty"`
	GC        *pool.GCStats     `json:"gc,omitempty"`
}

// DeviceInfo describes a served device.
type DeviceInfo struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Path   string `json:"path"`
	State  string `json:"state"` // running, stopped
	Queues int    `json:"queues"`
	Depth  int    `json:"depth"`
	LBS    int    `json:"logical_block_size"`
	// ReadOnly: the device is served read-only (writes fail with EROFS).
	ReadOnly bool `json:"read_only,omitempty"`
	// Paused: its I/O is held (pause; resume lets it go on).
	Paused bool               `json:"paused,omitempty"`
	Stats  engine.DeviceStats `json:"stats"`
	// Host is, on a RADOS pool, the host that holds the device's lease
	// (serves its writes); "" if none.
	Host string `json:"host,omitempty"`
}
