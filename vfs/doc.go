// Package vfs is the one door through which the store touches files: an FS
// of named files and directories and the File handles it opens. Every file
// operation of the store (open, read, write, vectored write, truncate,
// fallocate, fdatasync, rename, remove, directory sync, flock, SEEK_DATA)
// goes through these two interfaces, so a test can swap the disk for one
// that crashes.
//
// # Implementations
//
// OS is the real file system. It is the only place in the project that makes
// file system calls the standard library does not offer (fallocate,
// fdatasync, O_DIRECT, flock, SEEK_DATA/SEEK_HOLE, pwritev), and the only
// place outside ublk/ that uses unsafe (buffer alignment for O_DIRECT).
//
// CrashFS is an in-memory file system with strict power-cut semantics, in the
// spirit of pebble's strict MemFS and CrashClone: file contents become
// durable only at File.Sync, and directory entries (creates, renames,
// removes) only at FS.SyncDir of their directory. A crash image (CrashClone,
// or CrashAfter's armed crash) keeps only what was durable, except that each
// file's last unsynced write may survive torn at a 512-byte sector boundary.
// CrashFS also counts mutating operations and injects faults (the Nth
// operation fails, the disk fills after N bytes).
//
// # Concurrency
//
// Both implementations are safe for concurrent use. CrashFS serialises every
// operation under one mutex (it is a test double; speed is not its point).
//
// # Caveats
//
// CrashFS makes directories durable as soon as they are created (MkdirAll);
// only the entries of files are tracked. It has no hard links and no
// permissions. DataRegion on CrashFS reports the whole file as data.
// The package imports nothing of the project: blockstore, index and engine
// all build on it.
package vfs
