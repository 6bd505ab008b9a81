package blockstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestManifestGolden pins the manifest's on-disk form.
func TestManifestGolden(t *testing.T) {
	golden := filepath.Join("testdata", "extents-3.golden")
	got := encodeManifest(3)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("manifest encoding changed:\n got %x\nwant %x", got, want)
	}
	if n, err := decodeManifest(want); err != nil || n != 3 {
		t.Fatalf("decode golden: %d %v", n, err)
	}
}

func TestManifestDamage(t *testing.T) {
	good := encodeManifest(5)
	tests := map[string][]byte{
		"empty":     nil,
		"truncated": good[:19],
		"magic":     append([]byte{'X'}, good[1:]...),
		"count":     append(append([]byte{}, good[:8]...), append([]byte{6}, good[9:]...)...),
		"huge":      encodeManifest(1 << 40),
	}
	for name, b := range tests {
		if _, err := decodeManifest(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(encodeManifest(3))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := decodeManifest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeManifest(n), b) {
			t.Fatalf("manifest %x decodes to %d but re-encodes differently", b, n)
		}
	})
}
