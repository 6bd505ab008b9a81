package engine

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// fsck's memory is bounded by a small constant per slot (issue 8: the old
// one held 150-200 bytes of Go maps per live slot). Measured as all bytes
// allocated while it runs (garbage included), over a store of 32768 live
// slots, beyond the fixed buffers. (It retains 12 bytes and a bit per slot;
// the rest is LevelDB iteration garbage: about 30 bytes per slot in all,
// against 474 for the old one.)
func TestFsckMemoryPerSlot(t *testing.T) {
	_, e := newStore(t, Options{ExtentSize: 4096 * BlockSize})
	d, err := e.CreateDevice("d", 32768*BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	const n = 32768
	buf := make([]byte, 256*BlockSize)
	for first := 0; first < n; first += 256 {
		for i := range 256 {
			binary.LittleEndian.PutUint64(buf[i*BlockSize:], uint64(first+i+1))
		}
		if _, err := d.WriteAt(buf, int64(first)*BlockSize); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rep, err := e.Fsck(false)
	runtime.ReadMemStats(&after)
	if err != nil || !rep.OK() || rep.LiveSlots != n {
		t.Fatalf("fsck: %v %+v", err, rep)
	}
	const fixed = 6 << 20 // 4 MiB of data chunk, 1 MiB of map scan buffer, LevelDB
	per := float64(after.TotalAlloc-before.TotalAlloc-min(after.TotalAlloc-before.TotalAlloc, fixed)) / n
	t.Logf("fsck allocated %d bytes for %d slots (%.1f bytes per slot beyond %d)", after.TotalAlloc-before.TotalAlloc, n, per, fixed)
	if per > 48 {
		t.Fatalf("fsck allocated %.1f bytes per slot beyond %d bytes, want at most 48", per, fixed)
	}
}
