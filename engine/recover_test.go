package engine

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A store whose superblock was lost: init refuses the directory (a new
// superblock with another hash would make every block look damaged), and
// RecoverSuperblock rebuilds it from the extent files and stored blocks.
func TestLostSuperblock(t *testing.T) {
	tests := []struct {
		name   string
		hash   HashAlg
		verify bool
		damage bool // the first stored block is damaged
		blocks int
		flip   bool // the superblock is damaged, not lost
	}{
		{"sha1, superblock damaged", SHA1, true, false, 40, true},
		{"sha256", SHA256, false, false, 40, false},
		{"sha256 verify", SHA256, true, false, 40, false},
		{"sha1", SHA1, true, false, 40, false},
		{"sha1, first block damaged", SHA1, true, true, 40, false},
		{"no block stored", SHA1, true, false, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, e := newStore(t, Options{Hash: tc.hash, Verify: tc.verify, ExtentSize: 16 * BlockSize})
			d, err := e.CreateDevice("a", 64*BlockSize)
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			for i := range tc.blocks {
				want = append(want, block(uint64(i%30))...)
			}
			if len(want) > 0 {
				if _, err := d.WriteAt(want, 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.damage {
				f, err := os.OpenFile(filepath.Join(dir, "blocks", "extent-000000.dat"), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteAt([]byte{0xff, 0xfe}, 10)
				f.Close()
			}
			sbPath := filepath.Join(dir, superblockName)
			if tc.flip {
				b, _ := os.ReadFile(sbPath)
				b[16] ^= 3 // the hash byte: sha1 reads as sha256
				os.WriteFile(sbPath, b, 0o600)
				if _, err := Open(dir, Options{}); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("open with a damaged superblock: %v", err)
				}
				if err := Create(dir, Options{}); !errors.Is(err, ErrExists) {
					t.Fatalf("init over a damaged superblock: %v", err)
				}
			} else {
				if err := os.Remove(sbPath); err != nil {
					t.Fatal(err)
				}
				err = Create(dir, Options{})
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "--recover-superblock") {
					t.Fatalf("init over a store without superblock: %v", err)
				}
				if _, err := os.Stat(sbPath); err == nil {
					t.Fatal("the refused init wrote a superblock")
				}
			}
			// What the files cannot tell comes from the options: here the
			// hash of a store that holds no block, and verify.
			o := Options{Verify: tc.verify}
			if tc.blocks == 0 {
				o.Hash, o.ExtentSize = tc.hash, 16*BlockSize
			}
			sb, err := RecoverSuperblock(dir, o)
			if err != nil {
				t.Fatal(err)
			}
			if sb.Hash != tc.hash || sb.Verify != tc.verify || sb.ExtentSize != 16*BlockSize {
				t.Fatalf("recovered %+v, want hash %v verify %v extents of %d", sb, tc.hash, tc.verify, 16*BlockSize)
			}
			if _, err := RecoverSuperblock(dir, Options{}); !errors.Is(err, ErrExists) {
				t.Fatalf("recovering over a sound superblock: %v", err)
			}
			if _, err := os.Stat(sbPath + ".damaged"); (err == nil) != tc.flip {
				t.Fatalf("damaged superblock kept: %v, want %v", err == nil, tc.flip)
			}
			e = reopen(t, dir, nil, Options{})
			if tc.blocks == 0 {
				return
			}
			d, err = e.Device("a")
			if err != nil {
				t.Fatal(err)
			}
			rep, err := e.Fsck(false)
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage {
				if rep.BadData != 1 {
					t.Fatalf("fsck: %+v, want the one damaged block", rep)
				}
				return
			}
			if !rep.OK() {
				t.Fatalf("fsck after recovery: %+v", rep)
			}
			if got := mustRead(t, d, 0, int64(len(want))); !bytes.Equal(got, want) {
				t.Fatal("data differs after recovery")
			}
		})
	}
}
