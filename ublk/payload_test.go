package ublk

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestUserCopyOffset(t *testing.T) {
	for _, tc := range []struct {
		qid, tag uint16
		want     int64
	}{
		{0, 0, 0x80000000},
		{0, 1, 0x80000000 + 1<<25},
		{1, 0, 0x80000000 + 1<<41},
		{3, 4095, 0x80000000 + 3<<41 + 4095<<25},
		{4095, 4095, 0x80000000 + 4095<<41 + 4095<<25},
	} {
		if got := userCopyOffset(tc.qid, tc.tag); got != tc.want {
			t.Errorf("userCopyOffset(%d, %d) = %#x, want %#x", tc.qid, tc.tag, got, tc.want)
		}
	}
	// A request's bytes must stay below the next tag's offset.
	if userCopyOffset(0, 1)-userCopyOffset(0, 0) < maxIOBufBytes {
		t.Fatal("tag stride below the largest request")
	}
}

// filePayload is a Payload over a plain file, standing in for the kernel's
// request pages: the request's data starts at base.
func filePayload(t *testing.T, base int64, n int) (Payload, *os.File) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "payload"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return Payload{fd: int(f.Fd()), base: base, n: n}, f
}

func TestPayloadBounds(t *testing.T) {
	p, f := filePayload(t, 1000, 8192)
	if p.Len() != 8192 {
		t.Fatalf("Len = %d", p.Len())
	}
	data := pattern(4096, 3)
	if n, err := p.WriteAt(data, 4096); err != nil || n != 4096 {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	onDisk := make([]byte, 4096)
	if _, err := f.ReadAt(onDisk, 1000+4096); err != nil || !bytes.Equal(onDisk, data) {
		t.Fatalf("WriteAt landed wrong: %v", err)
	}
	got := make([]byte, 4096)
	if n, err := p.ReadAt(got, 4096); err != nil || n != 4096 || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	for _, tc := range []struct {
		off int64
		n   int
	}{{-1, 1}, {8192, 1}, {4097, 4096}, {9000, 0}} {
		if _, err := p.WriteAt(make([]byte, tc.n), tc.off); !errors.Is(err, io.ErrShortBuffer) {
			t.Errorf("WriteAt(%d bytes at %d) = %v, want ErrShortBuffer", tc.n, tc.off, err)
		}
		if _, err := p.ReadAt(make([]byte, tc.n), tc.off); !errors.Is(err, io.ErrShortBuffer) {
			t.Errorf("ReadAt(%d bytes at %d) = %v, want ErrShortBuffer", tc.n, tc.off, err)
		}
	}
	// Reading past the end of what the kernel holds is an error, not a
	// silent short read.
	short, _ := filePayload(t, 0, 4096)
	if _, err := short.ReadAt(make([]byte, 4096), 0); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAt of an empty file = %v, want ErrUnexpectedEOF", err)
	}
}

// TestMemBackendPayload moves data through ReadTo and WriteFrom and
// checks it against ReadAt/WriteAt, across chunk boundaries and holes.
func TestMemBackendPayload(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name string
		off  int64
		n    int
		fua  bool
	}{
		{"one-block", 8192, 4096, false},
		{"sector", 512, 512, true},
		{"across-chunks", memChunkSize - 4096, 3 * 4096, false},
		{"several-chunks", 3 * 512, 3*memChunkSize + 1024, true},
		{"last-block", size - 4096, 4096, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemBackend(size)
			// A hole then data: ReadTo must send zeros for the hole.
			if _, err := m.WriteAt(pattern(4096, 9), tc.off+int64(tc.n)-4096); err != nil && tc.n >= 4096 {
				t.Fatal(err)
			}
			want := make([]byte, tc.n)
			if _, err := m.ReadAt(want, tc.off); err != nil {
				t.Fatal(err)
			}
			p, f := filePayload(t, 512, tc.n)
			if _, err := f.WriteAt(bytes.Repeat([]byte{0xee}, tc.n), 512); err != nil {
				t.Fatal(err)
			}
			if err := m.ReadTo(p, tc.off); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, tc.n)
			if _, err := f.ReadAt(got, 512); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ReadTo sent wrong data (%v)", err)
			}

			data := pattern(tc.n, 77)
			if _, err := f.WriteAt(data, 512); err != nil {
				t.Fatal(err)
			}
			before := m.Stats()
			if err := m.WriteFrom(p, tc.off, tc.fua); err != nil {
				t.Fatal(err)
			}
			if _, err := m.ReadAt(got, tc.off); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("WriteFrom stored wrong data (%v)", err)
			}
			after := m.Stats()
			if after.Writes != before.Writes+1 || (after.FUAWrites > before.FUAWrites) != tc.fua {
				t.Fatalf("stats %+v -> %+v (fua %v)", before, after, tc.fua)
			}
		})
	}
}

func TestMemBackendPayloadErrors(t *testing.T) {
	m := NewMemBackend(1 << 20)
	p, _ := filePayload(t, 0, 8192)
	if err := m.ReadTo(p, 1<<20-4096); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadTo past the end = %v", err)
	}
	if err := m.WriteFrom(p, 1<<20-4096, false); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("WriteFrom past the end = %v", err)
	}
	// The payload holds nothing (an empty file): WriteFrom fails and says so.
	if err := m.WriteFrom(p, 0, false); err == nil {
		t.Error("WriteFrom of a payload that cannot be read succeeded")
	}
	if m.Chunks() > 1 {
		t.Errorf("failed calls allocated %d chunks", m.Chunks())
	}
}
