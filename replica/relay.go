package replica

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// A daemon runs a sender or receiver for a client on the other end of its
// socket; the client relays the stream between the socket and the remote
// side (a remote shell's pipes, or its own standard input and output).
// When the daemon's side is done it sends one last frame, STATS, to the
// client alone: what it did and how it ended.

type statsFrame struct {
	Stats
	Error string `json:"error,omitempty"`
}

// WriteStats ends a stream run for a local client with the STATS frame.
func WriteStats(w io.Writer, st Stats, err error) error {
	sf := statsFrame{Stats: st}
	if err != nil {
		sf.Error = err.Error()
	}
	b, _ := json.Marshal(sf)
	fw := newFrameWriter(w)
	if err := fw.write(tStats, b); err != nil {
		return err
	}
	return fw.flush()
}

// ErrDaemon is a transfer the daemon reported as failed.
var ErrDaemon = errors.New("replication failed")

// Relay copies the stream between local (a daemon running one side) and
// the remote side (in, out) until the daemon has sent its STATS frame,
// and returns those. Bytes from in go to local unread; frames from local
// go to out checked, except STATS. closeWrite, if set, half-closes local
// when in ends.
func Relay(local io.ReadWriter, in io.Reader, out io.Writer, closeWrite func() error) (Stats, error) {
	go func() {
		io.Copy(local, in)
		if closeWrite != nil {
			closeWrite()
		}
	}()
	fr := newFrameReader(local)
	fw := newFrameWriter(out)
	for {
		typ, p, err := fr.read()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Stats{}, fmt.Errorf("%w: the daemon's stream ended early: %w", ErrDaemon, err)
		}
		if typ == tStats {
			var sf statsFrame
			if err := json.Unmarshal(p, &sf); err != nil {
				return Stats{}, protoErr("STATS: %v", err)
			}
			if sf.Error != "" {
				return sf.Stats, fmt.Errorf("%w: %s", ErrDaemon, sf.Error)
			}
			return sf.Stats, nil
		}
		if err := fw.write(typ, p); err != nil {
			return Stats{}, err
		}
		if err := fw.flush(); err != nil {
			return Stats{}, err
		}
	}
}
