package goldenfile

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Check compares b with testdata/name (a hex dump, 32 bytes a line) and
// rewrites the file first with -update. change says what a mismatch
// means, e.g. "an on-disk format change must raise FormatVersion".
func Check(t testing.TB, name string, b []byte, change string) {
	t.Helper()
	var dump strings.Builder
	for i := 0; i < len(b); i += 32 {
		dump.WriteString(hex.EncodeToString(b[i:min(i+32, len(b))]))
		dump.WriteByte('\n')
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(dump.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run TestGolden -update creates it)", err)
	}
	if !bytes.Equal(want, []byte(dump.String())) {
		t.Fatalf("%s: the encoding changed; %s (then -update)", name, change)
	}
}
