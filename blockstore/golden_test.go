package blockstore

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenMeta pins the slot record format: a change fails here, must be
// deliberate (the engine's FormatVersion goes up) and is recorded with -update.
func TestGoldenMeta(t *testing.T) {
	var m Meta
	for i := range m.Tag {
		m.Tag[i] = byte(0xa0 + i)
	}
	m.Refs, m.Flags = 0x01020304, FlagIndexed|FlagDamaged
	b := make([]byte, MetaSize)
	m.Encode(b)
	dump := []byte(hex.EncodeToString(b) + "\n")
	path := filepath.Join("testdata", "slot-record.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, dump, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, dump) {
		t.Fatal("the slot record encoding changed (a format change raises the store's FormatVersion; then -update)")
	}
	if got, ok := DecodeMeta(b); !ok || got != m {
		t.Fatalf("golden record decodes to %+v %v", got, ok)
	}
}
