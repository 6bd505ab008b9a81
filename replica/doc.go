// Package replica sends a device or snapshot from one store to another
// over any byte stream pair (standard input and output under ssh), so
// that only blocks the receiver lacks travel.
//
// The stream is a sequence of frames (frame.go): type, length, payload,
// CRC-32C. The sender says which device it sends (HELLO); the receiver
// answers with what it has of it (INFO: its snapshots and their GUIDs,
// whether it links blocks by key). The sender then states the stream
// (BEGIN: size, snapshot, base snapshot GUID for an incremental stream)
// and offers the map in batches (OFFER: a range of blocks, which of them
// hold data, and their content keys). For each offer the receiver links
// the blocks it already holds and answers which it lacks (WANT); the
// sender sends those (BLOCKS, compressed). END closes the stream; the
// receiver makes the replica current in one commit and confirms (DONE).
// Either side may end with ERROR. Several offers are in flight at once so
// a long link's round trip does not set the pace.
//
// The receiver trusts nothing: every frame is checked (CRC, sizes, block
// ranges inside the device, strictly increasing), every block is hashed
// and compared with its key before it is stored, and nothing becomes
// visible until END.
//
// Concurrency: a Sender writes offers on the caller's goroutine, reads
// answers on a second, and sends the blocks wanted from a third, which
// has two more read and compress the next answered offers' blocks while
// it writes (at most three payloads in memory). A Receiver runs on the
// caller's goroutine alone. Neither is safe for concurrent use.
package replica
