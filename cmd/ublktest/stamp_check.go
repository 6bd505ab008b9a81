package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The stamp log, appended by the writer on a file that survives the power
// cut (the guest's tmpfs), one line per event:
//
//	W LBA CID   intent: CID is about to be written at block LBA (logged
//	            before the write is issued, so a write that may have landed
//	            is always in the log)
//	F           an fsync of the device returned: every W above it completed
//	            before that fsync began, so it must survive a power cut
//
// A last line without its newline (the writer was killed mid-append) is
// ignored.

// errStampMismatch: the device does not hold what the log allows.
var errStampMismatch = errors.New("device content contradicts the acknowledged writes")

// stampExpect is what every block may hold after a power cut.
type stampExpect struct {
	acked   []uint64           // per block: the cid the last acknowledged flush covers
	pending map[int64][]uint64 // per block: cids written after it (may or may not have landed)
	history map[int64][]uint64 // per block: every cid the log writes there, in order
	writes  int
	flushes int
	maxCid  uint64
}

// expectFrom replays log over the state st.
func expectFrom(st *stampState, log []byte) (*stampExpect, error) {
	e := &stampExpect{acked: append([]uint64(nil), st.cids...), pending: map[int64][]uint64{},
		history: map[int64][]uint64{}}
	if i := bytes.LastIndexByte(log, '\n'); i >= 0 {
		log = log[:i+1]
	} else {
		log = nil
	}
	for n, line := range bytes.Split(bytes.TrimSuffix(log, []byte("\n")), []byte("\n")) {
		if len(log) == 0 {
			break
		}
		f := bytes.Fields(line)
		switch {
		case len(f) == 1 && string(f[0]) == "F":
			for lba, cids := range e.pending {
				e.acked[lba] = cids[len(cids)-1]
			}
			e.pending = map[int64][]uint64{}
			e.flushes++
		case len(f) == 3 && string(f[0]) == "W":
			lba, err1 := strconv.ParseInt(string(f[1]), 10, 64)
			cid, err2 := strconv.ParseUint(string(f[2]), 10, 64)
			if err1 != nil || err2 != nil || lba < 0 || lba >= st.blocks || cid == 0 {
				return nil, fmt.Errorf("stamp log line %d: bad write %q", n+1, line)
			}
			if cid > stampPool && cid < st.next {
				return nil, fmt.Errorf("stamp log line %d: cid %d was handed out before this log (state next %d)", n+1, cid, st.next)
			}
			e.pending[lba] = append(e.pending[lba], cid)
			e.history[lba] = append(e.history[lba], cid)
			e.writes++
			e.maxCid = max(e.maxCid, cid)
		default:
			return nil, fmt.Errorf("stamp log line %d: bad line %q", n+1, line)
		}
	}
	return e, nil
}

// allowed tells whether block lba may hold cid.
func (e *stampExpect) allowed(lba int64, cid uint64) bool {
	if cid == e.acked[lba] {
		return true
	}
	for _, c := range e.pending[lba] {
		if c == cid {
			return true
		}
	}
	return false
}

// explain says why cid at lba is wrong.
func (e *stampExpect) explain(st *stampState, lba int64, cid uint64, err error) string {
	want := fmt.Sprintf("flushed cid %d", e.acked[lba])
	if e.acked[lba] == 0 {
		want = "zeros (never written and flushed)"
	}
	if p := e.pending[lba]; len(p) > 0 {
		want += fmt.Sprintf(" or an unflushed later write %v", p)
	}
	var got string
	switch {
	case err != nil:
		got = err.Error()
	case cid == 0:
		got = "zeros"
	default:
		got = fmt.Sprintf("cid %d", cid)
		older := cid == st.cids[lba]
		for _, c := range e.history[lba] {
			older = older || c == cid
		}
		if older {
			got += " (an older write, superseded by a flushed one)"
		} else {
			got += " (never written to this block)"
		}
	}
	return fmt.Sprintf("block %d: holds %s; want %s", lba, got, want)
}

// stampReport sums up a check.
type stampReport struct {
	blocks, writes, flushes int
	unflushed               int // blocks with writes after their last flush
	landed                  int // of those, blocks that hold one of them
	bad                     int
	problems                []string // the first few bad blocks
}

func (r *stampReport) String() string {
	return fmt.Sprintf("%d blocks read; log: %d writes, %d flushes; %d blocks had unflushed writes, %d of them landed; %d bad",
		r.blocks, r.writes, r.flushes, r.unflushed, r.landed, r.bad)
}

const stampMaxProblems = 20

// checkStamps reads every block of dev (through buf, a multiple of
// stampBlockSize, aligned for O_DIRECT where dev needs it) and compares it
// with what st and log allow. It returns the report, the state to keep
// for the next run (what was read), and errStampMismatch when a block is
// wrong.
func checkStamps(dev io.ReaderAt, buf []byte, st *stampState, log []byte) (*stampReport, *stampState, error) {
	e, err := expectFrom(st, log)
	if err != nil {
		return nil, nil, err
	}
	r := &stampReport{blocks: int(st.blocks), writes: e.writes, flushes: e.flushes, unflushed: len(e.pending)}
	next := &stampState{blocks: st.blocks, next: max(st.next, e.maxCid+1), cids: make([]uint64, st.blocks)}
	scratch := make([]byte, stampBlockSize)
	per := int64(len(buf) / stampBlockSize)
	for first := int64(0); first < st.blocks; first += per {
		n := min(per, st.blocks-first)
		chunk := buf[:n*stampBlockSize]
		if _, err := dev.ReadAt(chunk, first*stampBlockSize); err != nil {
			return nil, nil, fmt.Errorf("read blocks %d-%d: %w", first, first+n-1, err)
		}
		for i := int64(0); i < n; i++ {
			lba := first + i
			cid, derr := decodeStamp(chunk[i*stampBlockSize:(i+1)*stampBlockSize], scratch)
			next.cids[lba] = cid
			if derr == nil && e.allowed(lba, cid) {
				if len(e.pending[lba]) > 0 && cid != e.acked[lba] {
					r.landed++
				}
				continue
			}
			r.bad++
			if len(r.problems) < stampMaxProblems {
				r.problems = append(r.problems, e.explain(st, lba, cid, derr))
			}
		}
	}
	if r.bad > 0 {
		return r, nil, fmt.Errorf("%w: %d of %d blocks", errStampMismatch, r.bad, st.blocks)
	}
	return r, next, nil
}
