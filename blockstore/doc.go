// Package blockstore owns block data: fixed-size 4 KiB slots and, beside each
// slot, a small checksummed metadata record (an opaque tag, a reference
// count and flags) that the layer above uses to find, count and rebuild its
// blocks.
//
// # Basics
//
// Store is the one storage interface. Extents is its first implementation:
// preallocated extent files (fallocate) in one directory, each holding a
// fixed number of slots, with a sidecar file of 48-byte slot records. A slot
// number is global: extent*SlotsPerExtent + index. New extents are added by
// Grow as the store fills; a full disk is ErrFull and leaves earlier data
// intact. Later implementations (Ceph RADOS, S3) must pass the shared suite in
// package storetest.
//
// Block data is written and read with O_DIRECT where the file system
// supports it (buffered elsewhere, as on tmpfs), so the store does not cache
// guest data a second time and large writes skip a page-cache copy that costs
// more than the disk; Sync (fdatasync) makes it and the extents' allocation
// durable.
//
// # Concurrency
//
// A Store is safe for concurrent use. Writes to distinct slots may run in
// parallel; callers must not write the same slot concurrently (the engine
// never does: a slot is written once, before it is published). Sync may run
// beside reads and writes; it covers every write that completed before it
// was called.
//
// # Caveats
//
// The store does not decide which slots are free: that is derived by the
// caller from the reference counts in the slot records. The package never
// imports the index or anything above it. Every system call on files
// (fallocate, fdatasync, O_DIRECT, flock) lives in sysfile.go.
package blockstore
