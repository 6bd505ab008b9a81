package analyze

import (
	"os"
	"path/filepath"
	"testing"
)

func writeImage(t *testing.T, dir, name string, blocks ...byte) string {
	t.Helper()
	b := make([]byte, 0, len(blocks)*blockSize)
	for _, v := range blocks {
		blk := make([]byte, blockSize)
		if v != 0 {
			for i := range blk {
				blk[i] = v
			}
		}
		b = append(b, blk...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAnalyze(t *testing.T) {
	dir := t.TempDir()
	a := writeImage(t, dir, "a", 1, 2, 2, 0, 0, 3)
	b := writeImage(t, dir, "b", 1, 2, 4, 0)
	rows, err := Analyze([]string{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{
		{Image: a, RawBytes: 6 * blockSize, ZeroBlocks: 2, DataBlocks: 4, UniqueBlocks: 3, NewBlocks: 3,
			CumRawBytes: 6 * blockSize, CumStoredBytes: 3 * blockSize, CumSavedPct: 50},
		{Image: b, RawBytes: 4 * blockSize, ZeroBlocks: 1, DataBlocks: 3, UniqueBlocks: 3, NewBlocks: 1,
			CumRawBytes: 10 * blockSize, CumStoredBytes: 4 * blockSize, CumSavedPct: 60},
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Fatalf("row %d:\n got %+v\nwant %+v", i, rows[i], want[i])
		}
	}
	if _, err := Analyze([]string{filepath.Join(dir, "missing")}, nil); err == nil {
		t.Fatal("missing image accepted")
	}
}
