package sample

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestFamilySharesBlocks(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	spec := Spec{Size: 1 << 20, Family: 1, Zero: 0.3, Own: 0.2}
	if err := Write(a, spec); err != nil {
		t.Fatal(err)
	}
	spec.Member = 1
	if err := Write(b, spec); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	same, zero := 0, 0
	for i := 0; i < len(da); i += blockSize {
		x, y := da[i:i+blockSize], db[i:i+blockSize]
		if bytes.Equal(x, y) {
			same++
		}
		if bytes.Equal(x, make([]byte, blockSize)) {
			zero++
		}
	}
	n := len(da) / blockSize
	if same < n/2 || same == n || zero < n/5 || zero > n/2 {
		t.Fatalf("%d of %d blocks equal, %d zero", same, n, zero)
	}
	if err := Write(a, spec); err == nil {
		t.Fatal("overwrote an existing file")
	}
	if err := Write(filepath.Join(dir, "c"), Spec{Size: 100}); err == nil {
		t.Fatal("size 100 accepted")
	}
}
