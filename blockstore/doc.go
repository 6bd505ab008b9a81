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
// intact.
//
// Grow is crash-safe: each new file is built as a temp file
// (extent-N.dat.tmp, .meta.tmp), preallocated or sized, synced, and renamed
// into place (.meta first), the directory is synced, and only then the
// manifest ("extents", a checksummed extent count written with the durable
// recipe) counts the new extent. Open removes what an interrupted Grow left
// (temp files, a .meta without its .dat beyond the manifest, the two empty
// files older code left) and refuses a store with fewer or shorter extent
// files than the manifest says with a *DamageError naming each file
// (wrapping ErrCorrupt); RepairExtents repairs those for fsck --repair. A
// store made before the manifest gets one from the files found. Later implementations (Ceph RADOS, S3) must pass the shared suite in
// package storetest.
//
// # Blocks: the seam for a shared store
//
// Blocks (blocks.go) is storage that chooses where each block goes and
// counts no references: Put returns locations, Drop gives them back. It is
// the interface the local store and the store shared by hosts on Ceph
// RADOS (package rados, build tag rados) both implement, checked by the
// suite in package blockstest. SlotBlocks (slotblocks.go) implements it
// over a Store: a location is a slot + 1, a dropped slot is reused only
// after the Sync that made its zeroed record durable. The engine does not
// use Blocks yet (rados/design.md, section 7, says how it moves over).
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
// was called: writers mark their extent dirty after the write completes, and
// Sync clears the mark before it syncs, so a write completing during a Sync
// is covered by the next one.
//
// # Caveats
//
// The store does not decide which slots are free: that is derived by the
// caller from the reference counts in the slot records. The package never
// imports the index or anything above it. Every file operation goes through
// a vfs.FS (OpenExtentsFS; OpenExtents uses the real one), so tests can cut
// the power with vfs.CrashFS; the system calls live in package vfs.
package blockstore
