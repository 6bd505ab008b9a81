package replica

import (
	"errors"
	"fmt"

	"blockhash/engine"
)

var (
	// ErrProtocol marks a stream that breaks the protocol: a bad frame,
	// a message out of place, a value out of range. A frame that fails
	// its checksum is also engine.ErrCorrupt (the project's one
	// corruption kind).
	ErrProtocol = errors.New("replication protocol error")
	// ErrRemote is an error the other side reported.
	ErrRemote = errors.New("the other side failed")
	// ErrVersion is a peer speaking a protocol version this one does not.
	ErrVersion = errors.New("unsupported replication protocol version")
)

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

func corruptErr(format string, args ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrProtocol, engine.ErrCorrupt, fmt.Sprintf(format, args...))
}
