package corrupt

import "errors"

// ErrCorrupt means stored bytes failed their checksum or are malformed.
// Packages re-export it under their own name (engine.ErrCorrupt,
// blockstore.ErrCorrupt, index.ErrCorrupt are this same value).
var ErrCorrupt = errors.New("corrupt")
