package engine

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"blockhash/vfs"
)

// Fuzzers of the copy-on-write formats (pointer pages, a volume file's
// header and its copy), in the style of format_test.go: a checksummed
// format is fuzzed through the bytes before its checksum with a fix flag,
// and inputs are small (padded with zeros to a page).

// A pointer page that is cut short, fails its checksum, or is all zero.
func TestDecodePtrPage(t *testing.T) {
	var p ptrPage
	p[0], p[5], p[ptrsPerPage-1] = 3, lostPage, 9
	good := make([]byte, mapPageSize)
	p.encode(good)
	flipped := bytes.Clone(good)
	flipped[20] ^= 1
	tests := []struct {
		name string
		b    []byte
		want *ptrPage // nil: ErrCorrupt
	}{
		{"good", good, &p},
		{"all zero", make([]byte, mapPageSize), &ptrPage{}},
		{"cut short", good[:mapPageSize-1], nil},
		{"empty", nil, nil},
		{"bit flip", flipped, nil},
	}
	for _, tc := range tests {
		got, err := decodePtrPage(tc.b)
		switch {
		case tc.want == nil && !errors.Is(err, ErrCorrupt):
			t.Errorf("%s: %v, want ErrCorrupt", tc.name, err)
		case tc.want != nil && (err != nil || *got != *tc.want):
			t.Errorf("%s: %v, want the page", tc.name, err)
		}
	}
}

// FuzzDecodePtrPage: the input is padded with zeros to a page (a page cut
// short is TestDecodePtrPage's); with fix, its last 4 bytes are the
// checksum of the rest.
func FuzzDecodePtrPage(f *testing.F) {
	var p ptrPage
	p[0], p[1], p[2] = 3, lostPage, 0
	good := make([]byte, mapPageSize)
	p.encode(good)
	f.Add(good[:12], true)
	f.Add(good[:12], false)
	f.Add([]byte{}, false) // all zero: a valid, empty page
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = withCRC(b, mapPageSize)
		} else {
			b = headerRegion(b, false) // padded or cut to a page
		}
		p, err := decodePtrPage(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		out := make([]byte, mapPageSize)
		p.encode(out)
		if isZero(b) {
			if *p != (ptrPage{}) {
				t.Fatal("an all-zero page decoded to pointers")
			}
		} else if !bytes.Equal(out, b) {
			t.Fatal("pointer page does not re-encode to its input")
		}
		if p2, err := decodePtrPage(out); err != nil || *p2 != *p {
			t.Fatalf("pointer page does not survive re-encoding: %v", err)
		}
	})
}

// memFile is a vfs.File in memory (the volume header fuzzer's file).
type memFile struct{ b []byte }

func (f *memFile) Name() string { return "mem" }
func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f.b)) {
		return 0, io.EOF
	}
	n := copy(p, f.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(f.b)) {
		f.b = append(f.b, make([]byte, end-int64(len(f.b)))...)
	}
	return copy(f.b[off:], p), nil
}
func (f *memFile) WriteBuffers(bufs [][]byte, off int64) error {
	for _, b := range bufs {
		f.WriteAt(b, off)
		off += int64(len(b))
	}
	return nil
}
func (f *memFile) Truncate(size int64) error {
	f.b = append(f.b[:min(int64(len(f.b)), size)], make([]byte, max(0, size-int64(len(f.b))))...)
	return nil
}
func (f *memFile) Allocate(off, n int64) error { return nil }
func (f *memFile) Sync() error                 { return nil }
func (f *memFile) Size() (int64, error)        { return int64(len(f.b)), nil }
func (f *memFile) DataRegion(off, end int64) (int64, int64, error) {
	return off, end, nil
}
func (f *memFile) Direct() bool { return false }
func (f *memFile) Close() error { return nil }

var _ vfs.File = (*memFile)(nil)

// headerRegion makes a page (of a volume file's header, or a pointer
// page) from the fuzzer's bytes: with fix, b padded with zeros and
// checksummed; without, b as it is, padded or cut to the page.
func headerRegion(b []byte, fix bool) []byte {
	if fix {
		return withCRC(b, mapHeaderSize)
	}
	out := make([]byte, mapHeaderSize)
	copy(out, b)
	return out
}

// FuzzReadVolumeHeader: a volume file's header is read, or its copy when
// the header is damaged (and then, with fix, the header is rewritten from
// the copy); a header of another format version is refused, not replaced.
// The file may be cut short (cut: its length when below rootOffset).
func FuzzReadVolumeHeader(f *testing.F) {
	dev := (&mapHeader{ID: 1, Size: 1 << 20, Name: "vm1"}).encode()
	snap := (&mapHeader{ID: 2, Size: 1 << 30, Name: "s1", Kind: kindSnapshot, Parent: 1}).encode()
	f.Add(dev[:50], true, dev[:50], true, uint16(0), true)
	f.Add([]byte{1}, false, snap[:50], true, uint16(0), true)   // damaged header, good copy
	f.Add([]byte{1}, false, snap[:50], true, uint16(0), false)  // the same, read-only
	f.Add(dev[:50], true, []byte{}, false, uint16(5000), true)  // cut in the copy
	f.Add([]byte{1}, false, dev[:50], true, uint16(5000), true) // damaged header, copy cut short
	f.Add([]byte("BHMAP"), false, dev[:50], true, uint16(0), true)
	f.Fuzz(func(t *testing.T, hdr []byte, fixHdr bool, cp []byte, fixCp bool, cut uint16, fix bool) {
		content := append(headerRegion(hdr, fixHdr), headerRegion(cp, fixCp)...)
		if int(cut) > 0 && int(cut) < rootOffset {
			content = content[:cut]
		}
		vf := &memFile{b: bytes.Clone(content)}
		h, err := readVolumeHeader(vf, "vol", fix)
		first, errFirst := decodeMapHeader(content[:min(len(content), mapHeaderSize)])
		var copyH mapHeader
		errCopy := errors.New("no copy")
		if len(content) == rootOffset {
			copyH, errCopy = decodeMapHeader(content[mapHeaderSize:])
		}
		switch {
		case errFirst == nil:
			if err != nil || h != first {
				t.Fatalf("a good header read as %+v, %v", h, err)
			}
		case errors.Is(errFirst, ErrFormat):
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("a header of another format: %v, want ErrFormat", err)
			}
		case errCopy == nil:
			if err != nil || h != copyH {
				t.Fatalf("a damaged header with a good copy read as %+v, %v", h, err)
			}
			if fix {
				if got, err := decodeMapHeader(vf.b[:mapHeaderSize]); err != nil || got != copyH {
					t.Fatalf("the header was not rewritten from its copy: %v", err)
				}
				if !bytes.Equal(vf.b[mapHeaderSize:], content[mapHeaderSize:]) {
					t.Fatal("the copy changed")
				}
				return
			}
		default:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("a damaged header and copy: %v, want ErrCorrupt", err)
			}
		}
		if !bytes.Equal(vf.b, content) {
			t.Fatal("the file changed")
		}
		if err == nil && (h.ID == 0 || h.Size <= 0 || len(h.Name) == 0) {
			t.Fatalf("accepted out-of-range header %+v", h)
		}
	})
}
