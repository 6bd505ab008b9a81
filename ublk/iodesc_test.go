package ublk

import (
	"encoding/binary"
	"testing"
	"unsafe"
)

func TestParseRequest(t *testing.T) {
	const size = 1 << 30
	const maxIO = 512 << 10
	tests := []struct {
		name    string
		d       ioDesc
		wantErr bool
		want    request
	}{
		{"read", ioDesc{OpFlags: IOOpRead, NrSectors: 8, StartSector: 16}, false,
			request{Op: IOOpRead, Off: 8192, Length: 4096}},
		{"write fua", ioDesc{OpFlags: IOOpWrite | IOFlagFUA, NrSectors: 1, StartSector: 1}, false,
			request{Op: IOOpWrite, Flags: IOFlagFUA, Off: 512, Length: 512}},
		{"flush with sector -1", ioDesc{OpFlags: IOOpFlush, StartSector: ^uint64(0)}, false,
			request{Op: IOOpFlush}},
		{"discard larger than buffer", ioDesc{OpFlags: IOOpDiscard, NrSectors: 1 << 20}, false,
			request{Op: IOOpDiscard, Length: 512 << 20}},
		{"write zeroes nounmap", ioDesc{OpFlags: IOOpWriteZeroes | IOFlagNoUnmap, NrSectors: 8, StartSector: 8}, false,
			request{Op: IOOpWriteZeroes, Flags: IOFlagNoUnmap, Off: 4096, Length: 4096}},
		{"read to the last sector", ioDesc{OpFlags: IOOpRead, NrSectors: 1, StartSector: size/512 - 1}, false,
			request{Op: IOOpRead, Off: size - 512, Length: 512}},
		{"read past the end", ioDesc{OpFlags: IOOpRead, NrSectors: 2, StartSector: size/512 - 1}, true, request{}},
		{"read bigger than buffer", ioDesc{OpFlags: IOOpRead, NrSectors: maxIO/512 + 1}, true, request{}},
		{"huge sector", ioDesc{OpFlags: IOOpWrite, NrSectors: 1, StartSector: 1 << 60}, true, request{}},
		{"write same unsupported", ioDesc{OpFlags: IOOpWriteSame, NrSectors: 1}, true, request{}},
		{"zone op unsupported", ioDesc{OpFlags: 10, NrSectors: 1}, true, request{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(tc.d, size, maxIO)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRequestFUA(t *testing.T) {
	r, _ := parseRequest(ioDesc{OpFlags: IOOpWrite | IOFlagFUA, NrSectors: 1}, 4096, 4096)
	if !r.FUA() {
		t.Fatal("FUA flag not seen")
	}
	r, _ = parseRequest(ioDesc{OpFlags: IOOpWrite, NrSectors: 1}, 4096, 4096)
	if r.FUA() {
		t.Fatal("FUA seen on a plain write")
	}
}

// FuzzIODesc decodes arbitrary descriptor bytes: decodeIODesc must agree
// with the in-memory layout the queue reads through unsafe, and
// parseRequest must never panic nor accept a range outside the device or a
// data transfer larger than the buffer.
func FuzzIODesc(f *testing.F) {
	seed := func(op uint32, n uint32, sector uint64) []byte {
		b := make([]byte, 24)
		binary.LittleEndian.PutUint32(b, op)
		binary.LittleEndian.PutUint32(b[4:], n)
		binary.LittleEndian.PutUint64(b[8:], sector)
		return b
	}
	f.Add(seed(IOOpRead, 8, 0), int64(1<<20), 65536)
	f.Add(seed(IOOpWrite|IOFlagFUA, 128, 2040), int64(1<<20), 65536)
	f.Add(seed(IOOpFlush, 0, ^uint64(0)), int64(4096), 4096)
	f.Add(seed(IOOpDiscard, ^uint32(0), 1<<54), int64(1<<40), 1<<25)
	f.Add([]byte{1, 2, 3}, int64(512), 512)
	f.Fuzz(func(t *testing.T, b []byte, size int64, maxIO int) {
		d, err := decodeIODesc(b)
		if len(b) < 24 {
			if err == nil {
				t.Fatal("short descriptor accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if mem := *(*ioDesc)(unsafe.Pointer(&b[0:24][0])); mem != d {
			t.Fatalf("binary decode %+v != memory layout %+v", d, mem)
		}
		if size < 0 || maxIO < 0 {
			return
		}
		r, err := parseRequest(d, size, maxIO)
		if err != nil {
			return
		}
		if r.Op == IOOpFlush {
			return
		}
		if r.Off < 0 || r.Length < 0 || r.Off > size || r.Length > size-r.Off {
			t.Fatalf("accepted out-of-device request %+v (size %d)", r, size)
		}
		if (r.Op == IOOpRead || r.Op == IOOpWrite) && r.Length > int64(maxIO) {
			t.Fatalf("accepted %d-byte transfer with a %d-byte buffer", r.Length, maxIO)
		}
		if r.Off != int64(d.StartSector)*512 || r.Length != int64(d.NrSectors)*512 {
			t.Fatalf("sector conversion wrong: %+v from %+v", r, d)
		}
	})
}

func BenchmarkParseRequest(b *testing.B) {
	d := ioDesc{OpFlags: IOOpWrite | IOFlagFUA, NrSectors: 8, StartSector: 4096}
	for i := 0; i < b.N; i++ {
		if _, err := parseRequest(d, 1<<30, 1<<19); err != nil {
			b.Fatal(err)
		}
	}
}
