// Package engine owns a Blockhash store: a directory holding a superblock,
// the content index (package index), block data (package blockstore), the
// map pages of every device and snapshot (pages.go), one volume file per
// device or snapshot and a journal. It serves device I/O (ReadAt, WriteAt,
// Flush, Discard, WriteZeroes at any 512-byte-aligned offset and length)
// and knows nothing of kernel devices.
//
// # Basics
//
// Every 4 KiB block written is hashed (SHA-256 or, for compatibility, SHA-1,
// plus a CRC-32C). Zero blocks are never stored: their map entry stays empty.
// A block whose key is in the index gains a reference; a new one is written
// to a free slot and indexed. Overwrite, discard and device deletion drop
// references; a slot whose count reaches zero is unindexed at once and
// reused once that change is committed. Reads go from the map entry straight
// to the slot (the entry carries it) and are checked against the key's CRC.
//
// # Snapshots and clones
//
// Maps are trees of pages shared copy-on-write (pages.go, tree.go): a
// snapshot or clone copies its source's root and shares every table; a
// write first makes the leaves it changes its volume's own (one table and
// one leaf copied at most; a copied leaf adds a reference to every block
// it names). Snapshot, clone, rollback and delete are each one journaled
// commit (volumes.go); a delete then releases the volume's tables one
// commit at a time, resumed at open after a crash. Diff descends only into
// pages two volumes do not share.
//
// # Dedup domains
//
// A device may be put in a dedup domain (domains.go, keyer.go): its
// blocks are keyed by HMAC-SHA-256 under the domain's secret instead of
// the plain digest, so they are shared only with the devices of the same
// domain, and a guest cannot tell from a write's speed what another
// domain holds. The index and the extents stay one; the domain's name and
// secret are in the header of each of its volumes, and the set is rebuilt
// from them at open. Readers of the set load it through an atomic pointer;
// a new domain replaces it under the set's mutex. Verifiers (scrub, fsck)
// that know a block's key but not its domain try each domain's keyer.
//
// # Receiving replicas
//
// A receive (receive.go, driven by package replica) fills a hidden
// staging volume named ".recv-…" (no user name can start with a dot): an
// empty one for a full stream, a clone of the base snapshot for an
// incremental one. Blocks the store holds are linked by key (one more
// reference, no data; LinkRange links a run under one lock of its range,
// and a LevelDB hit primes the index's cache with the slot records after
// it, as a write's does, so a run stored side by side costs one LevelDB
// read); the others are written after their hash is checked against the
// key the sender gave. The references a link takes are dirty slot records
// of the same epoch as the map entries that name them: one commit makes
// both durable. Finish makes the staging tree the
// device and snapshots it under the sender's GUID in one journaled
// commit; until then the device is its old version. A staging volume
// survives crashes: the next receive of the same stream carries on with
// it, and one of another stream keeps it until it finishes (its blocks
// are linked, not fetched again).
//
// # Durability
//
// Changes collect in memory (map overlays, the index overlay, dirty slot
// records) and are committed by Flush, by a background timer, or when too
// many are pending. A commit seals the changes, syncs the block data, writes
// one journal record (the commit point), applies it to the map pages,
// volume files, slot records and LevelDB, and empties the journal. A crash at any instant
// leaves the state of the last commit: a complete journal record is
// replayed at open, a torn one never happened. Block data is only ever
// written to slots no committed state refers to, so each block reads old or
// new content, never a mix. A torn or garbage journal is reported and
// emptied at open; volumes are opened before the replay and their roots
// read after it, so a page torn by the crash is repaired by it (a record
// carries a copied leaf's whole first content, and root and leaf changes
// are patched into whatever the page holds). A commit that finds too
// little space takes the store's reserve first (reserve.go). After a failed
// metadata write the engine refuses further writes (ErrFailed); reopening
// recovers. Every file operation goes through vfs.FS (Options.FS), so the
// power-cut property test runs the engine on vfs.CrashFS.
//
// # Concurrency
//
// An Engine and its Devices are safe for concurrent use. Lock order:
// epoch (shared by writers, exclusive only while a commit seals) -> a
// block's lock (striped by device and block) -> a key's lock (striped by
// key) -> the small mutexes of the slot space, the device catalog, maps
// and index.
//
// The striped locks are a lockTable (locks.go): lockBlocks takes a
// request's block stripes in one global order, keyLock is a key's stripe.
// The slots' state is a slotSpace (slots.go), changed only through its
// methods: its allocMu guards the free list, the high water mark and the
// slots freed since the last seal; pendMu the slots whose data a request
// is still writing; mu the dirty slot records and the unindexed and
// damaged sets; refs.mu the reference count table's chunks (counts
// themselves are atomic, changed under the key's lock). Among them the
// order is allocMu -> mu -> refs.mu. The device catalog (catalog.go) is
// guarded by devMu; the map page trees (pages.go) by pages.mu, taken after
// a block's lock and before a key's lock.
//
// Two writers of one block never interleave; a read concurrent with a write
// returns old or new content. Readers hold reuseMu shared, so a slot they
// looked up is not reused before they read it: a commit holds it
// exclusively while it hands the slots it freed back to the slot space.
// Commits are serialised by commitMu, the only lock held across fsync;
// writers go on meanwhile. Hashing of large requests is spread over one
// goroutine per core.
//
// # Memory
//
// Per stored slot: 4 bytes of reference count (saturating: a slot that
// reaches 2^32-1 references keeps them for good). Per unique block: the
// index's level one (5 to 8 bytes). Fsck adds 12 bytes and a bit per slot
// while it runs (fsck.go), plus the damaged slots only. Uncommitted changes
// are bounded by Options.CommitChanges (writers wait at four times it).
// Per map page: 4 bytes of reference count; every table page (one per 340
// MiB of a device's written space, shared ones once) is kept in memory.
//
// # Damage
//
// Damage is contained and listed by device and block: a damaged map entry
// is quarantined (devmap.go), a damaged stored block is marked (damage.go),
// a damaged map table or root page quarantines the blocks under it, a
// volume header is read from its copy when damaged, and with both damaged
// only that volume goes offline. Scrub (scrub.go)
// verifies stored blocks online at a bounded rate. Options.Repair opens a
// store past damage that fsck --repair rebuilds (repair.go). A write of
// the same content heals a damaged block in place.
//
// # Full file systems and lost superblocks
//
// Options.ReadOnly opens a store without writing a byte (LevelDB
// read-only), so it can be read and checked on a full file system; a
// commit still in the journal is refused there, not replayed in memory.
// The store keeps a preallocated reserve file (reserve.go) that commands
// freeing space (Options.FreeingSpace) release on a full file system.
// RecoverSuperblock rebuilds a lost or damaged superblock from the extent
// files and the stored blocks (recover.go).
package engine
