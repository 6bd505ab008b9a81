// Package pool serves Blockhash devices from a store shared by hosts in
// a Ceph RADOS pool (issue 12). Any host serves any device, one at a
// time; blocks written by any host are stored once in the pool. The
// design and its failure cases are ../rados/design.md; this package is
// its device layer, on top of package rados (packs, content index,
// leases, GC rounds, references).
//
// # Objects it adds to the pool
//
//   - bh.store: the store header (StoreHeader), made once by Init.
//   - bh.dev.<name>: a device's header (DeviceHeader) and its lease
//     (cls_lock "lease", cookie host.<id>), watched by every host that
//     has the device open, for hand-over requests.
//   - bh.map.<device id>.<shard>: the device's map, one object per
//     ShardBlocks blocks, one omap entry per mapped block (content key +
//     location + CRC-32C); each shard carries a copy of the lease, and
//     every map write asserts it in the same op.
//   - bh.hoststate: each host's state (live, stopped, fenced) and client
//     address.
//
// A flush is one omap op per dirty shard: entries land per op, whole or
// not at all, which is all a block device promises (no journal: a write
// not flushed may or may not survive a crash, block by block).
//
// # Paths
//
// A write hashes each block; a content this host stored or merged (its
// key cache, used only for locations it still references) is
// referenced; the rest goes to the host's packs in one op and is queued
// for the shared index. Every MergeEvery the queue is sent (put-if-
// absent); a content another host indexed first is merged: this host's
// entries are re-pointed to that host's copy, and its own copy becomes
// garbage. So two hosts writing the same data store it twice for at most
// one merge interval, and GC (with compaction) brings the pool back to
// one copy. References: a host counts the locations its held maps name
// (rados.Refs) and publishes them at each GC round; GC also reads every
// map in the pool, so a device nobody holds keeps its blocks.
//
// # Concurrency
//
// Pool and Device are safe for concurrent use. Lock order: a device's
// state lock, then the host's merge lock (one Merge at a time), then its
// pin lock (rados.Refs), then the device's flush lock, then its map's
// lock; no lock is held across a RADOS op except the state lock (shared
// by I/O, exclusive while the lease is taken or let go), the merge lock
// and the flush lock. The merge loop is the package's one background
// goroutine; a flush writes at most flushFanOut shards at once.
//
// Every file that uses librados carries the build tag `rados`; the
// formats (format.go) and the map's bookkeeping (devmap.go) build
// without it and are tested by make unit.
package pool
