package replica

// Stats counts what one side of a transfer did.
type Stats struct {
	// WireOut and WireIn are the bytes this side wrote and read.
	WireOut int64 `json:"wire_out_bytes"`
	WireIn  int64 `json:"wire_in_bytes"`
	// MapBytes is the size of the OFFER frames (the map on the wire).
	MapBytes int64 `json:"map_bytes"`
	// DataBytes is the size of the BLOCKS frames; RawDataBytes what they
	// hold uncompressed.
	DataBytes    int64 `json:"data_bytes"`
	RawDataBytes int64 `json:"raw_data_bytes"`
	// BlocksScanned is how many blocks the offers covered (the whole
	// device for a full stream, the changed ranges for an incremental).
	BlocksScanned uint64 `json:"blocks_scanned"`
	// BlocksOffered holds data; BlocksSent travelled; BlocksLinked were
	// found in the receiver's store; BlocksZeroed read as zeros.
	BlocksOffered uint64 `json:"blocks_offered"`
	BlocksSent    uint64 `json:"blocks_sent"`
	BlocksLinked  uint64 `json:"blocks_linked"`
	BlocksZeroed  uint64 `json:"blocks_zeroed"`
	// Incremental is set for a stream from a base snapshot; Resumed when
	// the receiver carried on with an interrupted receive.
	Incremental bool    `json:"incremental"`
	Resumed     bool    `json:"resumed"`
	Seconds     float64 `json:"seconds"`
	// Snapshot and Base name the snapshot sent and its base (if any).
	Snapshot string `json:"snapshot,omitempty"`
	Base     string `json:"base,omitempty"`
}
