// Package corrupt holds the project's one corruption kind. Every package
// that detects damaged stored bytes (a checksum that fails, a malformed
// record, a file of the wrong size) wraps ErrCorrupt, so callers anywhere
// above test for damage with one errors.Is, whichever layer found it.
//
// It is a leaf package: it imports nothing of the project, so blockstore,
// index and engine can all use it without importing each other.
package corrupt
