package blockstore

// BlockSize is the size of one slot in bytes.
const BlockSize = 4096

// Slot is the global number of one block-sized slot.
type Slot uint64

// Store keeps fixed-size blocks in numbered slots, each with a metadata
// record. It is the one interface every block storage back end implements.
type Store interface {
	// Slots is the number of addressable slots (the capacity grown so far).
	Slots() uint64
	// Grow adds capacity. It returns ErrFull when the medium is full.
	Grow() error
	// WriteAt writes len(p)/BlockSize consecutive slots starting at first.
	WriteAt(p []byte, first Slot) error
	// WriteBlocks writes len(blocks) consecutive slots starting at first,
	// each from its own BlockSize buffer (one vectored write where possible).
	WriteBlocks(first Slot, blocks [][]byte) error
	// ReadAt reads len(p)/BlockSize consecutive slots starting at first.
	ReadAt(p []byte, first Slot) error
	// WriteMeta writes consecutive slot records starting at first.
	WriteMeta(first Slot, recs []Meta) error
	// ReadMeta fills recs with consecutive slot records starting at first.
	// Records failing their checksum come back zeroed and are listed in a
	// *CorruptError (err is then non-nil but every record was read).
	ReadMeta(first Slot, recs []Meta) error
	// Sync makes every completed WriteAt and WriteMeta durable.
	Sync() error
	// Usage reports bytes on disk.
	Usage() (Usage, error)
	// Close releases resources. It does not sync.
	Close() error
}

// Usage is the space a store occupies.
type Usage struct {
	DataBytes      int64 // block data space allocated on disk (preallocated extents)
	MetaBytes      int64 // slot records on disk
	Extents        int
	SlotsPerExtent uint64
}
