package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Random damage to the metadata (volume headers and roots, map tables and
// entries, slot records,
// stored data, the index's files):
// repair must always succeed, leave a consistent store, be stable (a
// second repair has nothing to do) and keep every block it does not list
// as lost or damaged.
func TestFsckRandomDamage(t *testing.T) {
	for seed := range uint64(16) { // 200 seeds passed once (33 s)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			dir, want := threeDevices(t)
			files := []string{
				filepath.Join(dir, "devices", "1.vol"), // a
				filepath.Join(dir, "devices", "2.vol"), // b
				filepath.Join(dir, "devices", "3.vol"), // c
				filepath.Join(dir, pagesName),
				filepath.Join(dir, "blocks", "extent-000000.meta"),
				filepath.Join(dir, "blocks", "extent-000000.dat"),
			}
			ixFiles, _ := filepath.Glob(filepath.Join(dir, "index", "*"))
			for _, p := range ixFiles {
				if b := filepath.Base(p); b != "LOCK" && b != "LOG" {
					files = append(files, p)
				}
			}
			for range 1 + r.IntN(6) {
				path := files[r.IntN(len(files))]
				var off int64
				switch filepath.Ext(path) {
				case ".vol": // the header's fields, or the root's first pointers
					off = int64(r.IntN(64))
					if r.IntN(3) > 0 {
						off = rootOffset + int64(r.IntN(16))
					}
				case "": // map pages: a table or a leaf's first entries
					off = mapPageSize*int64(1+r.IntN(4)) + int64(r.IntN(4*mapEntrySize))
				case ".dat":
					off = int64(r.IntN(8 * BlockSize))
				case ".meta":
					off = int64(r.IntN(9 * 48))
				default: // index files
					st, err := os.Stat(path)
					if err != nil || st.Size() == 0 {
						continue
					}
					off = r.Int64N(st.Size())
				}
				f, err := os.OpenFile(path, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteAt([]byte{byte(1 + r.IntN(255))}, off)
				f.Close()
			}
			e := openRepair(t, dir)
			if _, err := e.Fsck(true); err != nil {
				t.Fatalf("repair: %v", err)
			}
			rep, err := e.Fsck(true)
			if err != nil || rep.Repaired || !rep.Consistent() {
				t.Fatalf("second repair: %v %+v", err, rep)
			}
			e.Close()
			e = openOK(t, dir)
			rep, err = e.Fsck(false)
			if err != nil || !rep.Consistent() {
				t.Fatalf("fsck after repair: %v %+v", err, rep)
			}
			for name, img := range want {
				d, err := e.Device(name)
				if err != nil {
					t.Fatal(err)
				}
				for lba := range uint64(len(img) / BlockSize) {
					listed := false
					for _, r := range rep.Damaged {
						listed = listed || r.Device == name && lba >= r.FirstLBA && lba < r.FirstLBA+r.Blocks
					}
					buf := make([]byte, BlockSize)
					_, err := d.ReadAt(buf, int64(lba)*BlockSize)
					switch {
					case listed && !errors.Is(err, ErrCorrupt):
						t.Fatalf("device %s block %d is listed as lost but reads (%v)", name, lba, err)
					case !listed && err != nil:
						t.Fatalf("device %s block %d: %v (not listed)", name, lba, err)
					case !listed && !bytes.Equal(buf, img[lba*BlockSize:(lba+1)*BlockSize]):
						t.Fatalf("device %s block %d reads wrong (not listed)", name, lba)
					}
				}
			}
		})
	}
}
