package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// stampState is what a device is known to hold between two stamp runs: the
// cid of every block (0 = zeros) as last checked, and the next unique cid
// to hand out. `stamp init` writes the first one; every passing `stamp
// check` rewrites it with what it read.
//
// File format (text): "stamp-state v1", "blocks N", "next N", then one
// "L LBA CID" line per nonzero block.
type stampState struct {
	blocks int64
	next   uint64   // next unique cid, > stampPool
	cids   []uint64 // per block
}

func newStampState(blocks int64) *stampState {
	return &stampState{blocks: blocks, next: stampPool + 1, cids: make([]uint64, blocks)}
}

func (s *stampState) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "stamp-state v1\nblocks %d\nnext %d\n", s.blocks, s.next)
	for lba, c := range s.cids {
		if c != 0 {
			fmt.Fprintf(&b, "L %d %d\n", lba, c)
		}
	}
	return b.Bytes()
}

func decodeStampState(b []byte) (*stampState, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 3 || lines[0] != "stamp-state v1" {
		return nil, fmt.Errorf("stamp state: bad header")
	}
	blocks, err1 := strconv.ParseInt(strings.TrimPrefix(lines[1], "blocks "), 10, 64)
	next, err2 := strconv.ParseUint(strings.TrimPrefix(lines[2], "next "), 10, 64)
	if err1 != nil || err2 != nil || blocks <= 0 || blocks > 1<<30 || next <= stampPool {
		return nil, fmt.Errorf("stamp state: bad blocks or next line")
	}
	s := newStampState(blocks)
	s.next = next
	for i, l := range lines[3:] {
		f := strings.Fields(l)
		var lba int64
		var cid uint64
		var err error
		if len(f) == 3 && f[0] == "L" {
			if lba, err = strconv.ParseInt(f[1], 10, 64); err == nil {
				cid, err = strconv.ParseUint(f[2], 10, 64)
			}
		} else {
			err = fmt.Errorf("not an L line")
		}
		if err != nil || lba < 0 || lba >= blocks || cid == 0 || cid >= next {
			return nil, fmt.Errorf("stamp state: line %d: bad block line %q", i+4, l)
		}
		s.cids[lba] = cid
	}
	return s, nil
}

func loadStampState(path string) (*stampState, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := decodeStampState(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// save replaces path atomically.
func (s *stampState) save(path string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, s.encode(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// written counts the nonzero blocks and the distinct cids among them.
func (s *stampState) written() (blocks, distinct int) {
	seen := map[uint64]bool{}
	for _, c := range s.cids {
		if c != 0 {
			blocks++
			seen[c] = true
		}
	}
	return blocks, len(seen)
}

// sortedCids is a helper for messages.
func sortedCids(m map[uint64]bool) []uint64 {
	out := make([]uint64, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
