// Package index owns the two-level content index: from a block's Key (strong
// digest plus CRC-32) to the slot that stores it.
//
// # Levels
//
// Level one is a Filter in memory: an open-addressing table of 32-bit
// fingerprints (the digest's first four bytes), one per indexed block. It
// answers "definitely new" for a new block without touching disk; a false
// "maybe" costs one LevelDB read and happens for about n/2^32 of lookups.
// Level two is LevelDB, keyed by the full 36-byte Key, giving the slot.
//
// Duplicates arrive in runs (an OS image copied to a second disk), and the
// blocks of a run were stored next to each other. After a level-two hit the
// caller reads the slot records around the hit and hands them to Prime; they
// go into a bounded cache, so the rest of the run is found in memory.
//
// Changes (Insert, Remove) are visible to Lookup at once through an
// in-memory overlay. Seal freezes the overlay for a commit; Apply writes a
// list of operations to LevelDB with one synchronous write and drops the
// sealed overlay. The caller (the engine) journals those operations first,
// so Apply can be replayed after a crash: every operation is idempotent.
//
// # Space
//
// RAM per unique block: the filter holds 4 bytes per slot of its table and
// keeps its load between 0.5 and 0.8, so 5 to 8 bytes per indexed block
// (FilterBytes/Len reports it). Everything else is fixed-size: the cache
// (Options.CacheEntries, about 80 bytes an entry), LevelDB's block cache and
// write buffer (Options), and the overlays, which hold only the changes since
// the last commit.
//
// Disk per entry: a 37-byte LevelDB key ('k' + digest + CRC-32) and an 8-byte
// value, plus LevelDB's own per-entry overhead in its tables; random digests
// do not share prefixes or compress, so about 54 bytes an entry
// (`blockhash bench` measured 54.1 with 2 million entries).
//
// # Concurrency
//
// An Index is safe for concurrent use. Lookup, Insert and Remove of the same
// Key must be serialised by the caller (the engine holds a lock striped by
// key); different keys run in parallel. Apply and Seal must not run
// concurrently with each other. No lock is held across LevelDB I/O. The
// lookup counters (Stats) are atomics: counting takes no lock, and Lookup
// takes the index's lock shared only, so lookups never wait for each other.
//
// LevelDB's error types are translated here; nothing else imports goleveldb.
//
// # Files
//
// LevelDB's files go through a vfs.FS (Options.FS, the real file system by
// default) by way of fileStorage, goleveldb's storage interface over vfs, so
// a vfs.CrashFS cuts LevelDB's power with the rest of the store. It keeps
// goleveldb's names and CURRENT protocol, and syncs what goleveldb v1.0.0
// leaves unsynced but relies on: the directory after creating a journal or
// table, and a new manifest before CURRENT names it.
package index
