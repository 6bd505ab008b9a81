package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"blockhash/goldenfile"
	"blockhash/index"
	"blockhash/vfs"
)

// golden checks b against testdata/name.
func golden(t *testing.T, name string, b []byte) {
	t.Helper()
	goldenfile.Check(t, name, b, "an on-disk format change must raise FormatVersion")
}

func TestGoldenFormats(t *testing.T) {
	k := index.Key{CRC: 0x01020304}
	for i := range k.Sum {
		k.Sum[i] = byte(i + 1)
	}
	entry := func(e mapEntry) []byte {
		b := make([]byte, mapEntrySize)
		e.encode(b)
		return b
	}
	sb := Superblock{Version: FormatVersion, BlockSize: BlockSize, Hash: SHA256, Verify: true,
		ExtentSize: 1 << 30, Created: time.Unix(1700000000, 5)}
	hdr := mapHeader{ID: 7, Size: 1 << 30, Created: time.Unix(1700000000, 6), Name: "vm-disk.1", Origin: "golden@v1"}
	snap := mapHeader{ID: 8, Size: 1 << 30, Created: time.Unix(1700000000, 9), Name: "before-upgrade", Kind: kindSnapshot, Parent: 7}
	guidSnap := snap
	guidSnap.GUID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	staging := mapHeader{ID: 9, Size: 1 << 30, Created: time.Unix(1700000000, 10), Name: ".recv-0a0b0c0d0e0f",
		Origin: "vm-disk.1@before-upgrade", GUID: guidSnap.GUID, BaseGUID: [16]byte{0xff, 15: 0xee}, Target: "vm-disk.1"}
	domainHdr := mapHeader{ID: 10, Size: 1 << 30, Created: time.Unix(1700000000, 11), Name: "tenant-vm", Domain: "tenant-a",
		Secret: [SecretSize]byte{0x10, 0x11, 0x12, 31: 0x2f}}
	tbl := ptrPage{}
	tbl[0], tbl[1], tbl[1022] = 2, lostPage, 0x01020304
	tblBytes := make([]byte, mapPageSize)
	tbl.encode(tblBytes)
	pagesHeader := func() []byte {
		dir := t.TempDir()
		ps, err := openPages(vfs.OS, filepath.Join(dir, pagesName), false)
		if err != nil {
			t.Fatal(err)
		}
		ps.close()
		b, _ := os.ReadFile(filepath.Join(dir, pagesName))
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"superblock.golden", sb.Encode()},
		{"volume-header.golden", hdr.encode()},
		{"snapshot-header.golden", snap.encode()},
		{"snapshot-guid-header.golden", guidSnap.encode()},
		{"staging-header.golden", staging.encode()},
		{"domain-header.golden", domainHdr.encode()},
		{"volume-file.golden", encodeVolume(hdr, []uint32{1, 0, lostPage, 9})},
		{"table-page.golden", tblBytes},
		{"map-leaf-page.golden", func() []byte {
			b := make([]byte, mapPageSize)
			mapEntry{Key: k, Slot: 0x1122334455}.encode(b[0:])
			quarantined.encode(b[2*mapEntrySize:])
			mapEntry{Key: k, Slot: 7}.encode(b[84*mapEntrySize:])
			return b
		}()},
		{"map-pages-header.golden", pagesHeader()},
		{"map-entry.golden", entry(mapEntry{Key: k, Slot: 0x1122334455})},
		{"map-entry-zero.golden", entry(mapEntry{})},
		{"map-entry-quarantined.golden", entry(quarantined)},
		{"journal-record.golden", testRecord().encode()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, tc.name, tc.b)
			// And the decoders read the golden bytes back.
			switch tc.name {
			case "superblock.golden":
				if got, err := DecodeSuperblock(tc.b); err != nil || got != sb {
					t.Fatalf("%+v %v", got, err)
				}
			case "volume-header.golden":
				if got, err := decodeMapHeader(tc.b); err != nil || got != hdr {
					t.Fatalf("%+v %v", got, err)
				}
			case "snapshot-header.golden":
				if got, err := decodeMapHeader(tc.b); err != nil || got != snap {
					t.Fatalf("%+v %v", got, err)
				}
			case "snapshot-guid-header.golden":
				if got, err := decodeMapHeader(tc.b); err != nil || got != guidSnap {
					t.Fatalf("%+v %v", got, err)
				}
			case "staging-header.golden":
				if got, err := decodeMapHeader(tc.b); err != nil || got != staging {
					t.Fatalf("%+v %v", got, err)
				}
			case "domain-header.golden":
				if got, err := decodeMapHeader(tc.b); err != nil || got != domainHdr {
					t.Fatalf("%+v %v", got, err)
				}
			case "table-page.golden":
				if got, err := decodePtrPage(tc.b); err != nil || *got != tbl {
					t.Fatalf("%v", err)
				}
			case "map-entry-quarantined.golden":
				if got, ok := decodeMapEntry(tc.b); !ok || !got.isLost() {
					t.Fatalf("%+v %v", got, ok)
				}
			case "journal-record.golden":
				if _, err := decodeRecord(tc.b); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
