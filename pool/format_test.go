package pool

import (
	"bytes"
	"errors"
	"testing"

	"blockhash/goldenfile"
)

func golden(t *testing.T, name string, b []byte) {
	t.Helper()
	goldenfile.Check(t, name, b, "a change of the pool's object formats must raise formatPool")
}

func goldenEntry() Entry {
	var e Entry
	for i := range e.Key {
		e.Key[i] = byte(0xa0 + i)
	}
	e.Loc = 0x0001_0000_0002_0403 // any non-zero location
	return e
}

// TestGoldenFormats pins the map entry, the store header and the device
// header as stored in the pool, and reads each back.
func TestGoldenFormats(t *testing.T) {
	e := goldenEntry()
	v := encodeEntry(e)
	k := entryKey(0xfedc)
	golden(t, "map-entry-key.golden", []byte(k))
	golden(t, "map-entry.golden", v)
	if i, got, err := decodeEntry(k, v); err != nil || i != 0xfedc || got != e {
		t.Fatalf("golden entry decodes to %d %+v %v", i, got, err)
	}

	sh := StoreHeader{Format: formatPool, BlockSize: BlockSize, IndexShards: 64, Hash: "sha256", UUID: "0123456789abcdef0123456789abcdef"}
	golden(t, "store-header.golden", sh.encode())
	if got, err := decodeStoreHeader(sh.encode()); err != nil || got != sh {
		t.Fatalf("golden store header decodes to %+v %v", got, err)
	}

	dh := DeviceHeader{Format: formatPool, Name: "vm-disk.1", ID: 0x0123456789abcdef, Size: 1 << 30}
	golden(t, "device-header.golden", dh.encode())
	if got, err := decodeDeviceHeader(dh.encode()); err != nil || got != dh {
		t.Fatalf("golden device header decodes to %+v %v", got, err)
	}
}

// TestDecodeBad: every damaged entry or header is ErrCorrupt.
func TestDecodeBad(t *testing.T) {
	v := encodeEntry(goldenEntry())
	flip := func(i int) []byte {
		b := bytes.Clone(v)
		b[i] ^= 1
		return b
	}
	zeroLoc := Entry{Key: goldenEntry().Key}
	entries := []struct {
		name string
		k    string
		v    []byte
	}{
		{"short key", "abc", v},
		{"uppercase key", "0000FEDC", v},
		{"signed key", "+0000fed", v},
		{"binary key (format 1)", "\x00\x00\xfe\xdc", v},
		{"long key", "abcde", v},
		{"block past the shard", entryKey(ShardBlocks), v},
		{"short value", entryKey(1), v[:len(v)-1]},
		{"long value", entryKey(1), append(bytes.Clone(v), 0)},
		{"key byte flipped", entryKey(1), flip(3)},
		{"location flipped", entryKey(1), flip(KeySize + 2)},
		{"checksum flipped", entryKey(1), flip(len(v) - 1)},
		{"no location", entryKey(1), encodeEntry(zeroLoc)},
	}
	for _, c := range entries {
		if _, _, err := decodeEntry(c.k, c.v); !errors.Is(err, ErrCorrupt) {
			t.Errorf("entry %s: %v, want ErrCorrupt", c.name, err)
		}
	}
	for _, s := range []string{"", "{", `{"format":1,"block_size":4096,"index_shards":64,"hash":"sha256","uuid":"x"}`, `{"format":3,"block_size":4096,"index_shards":64,"hash":"sha256","uuid":"x"}`,
		`{"format":2,"block_size":512,"index_shards":64,"hash":"sha256","uuid":"x"}`,
		`{"format":2,"block_size":4096,"index_shards":48,"hash":"sha256","uuid":"x"}`,
		`{"format":2,"block_size":4096,"index_shards":64,"hash":"md5","uuid":"x"}`,
		`{"format":2,"block_size":4096,"index_shards":64,"hash":"sha256","uuid":""}`} {
		if _, err := decodeStoreHeader([]byte(s)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("store header %q: %v, want ErrCorrupt", s, err)
		}
	}
	for _, s := range []string{"", "[]", `{"format":2,"name":"a/b","id":1,"size":4096}`,
		`{"format":2,"name":"a","id":0,"size":4096}`, `{"format":2,"name":"a","id":1,"size":4095}`,
		`{"format":2,"name":"a","id":1,"size":0}`, `{"format":1,"name":"a","id":1,"size":4096}`} {
		if _, err := decodeDeviceHeader([]byte(s)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("device header %q: %v, want ErrCorrupt", s, err)
		}
	}
}

// FuzzDecodeEntry: decodeEntry never panics; what it accepts encodes
// back to the same bytes, and what it refuses is ErrCorrupt.
func FuzzDecodeEntry(f *testing.F) {
	v := encodeEntry(goldenEntry())
	f.Add(entryKey(0), v)
	f.Add(entryKey(ShardBlocks-1), v)
	f.Add(entryKey(ShardBlocks), v)
	f.Add("abc", v)
	f.Add("0000FEDC", v)
	f.Add(entryKey(7), v[:20])
	f.Add(entryKey(7), encodeEntry(Entry{}))
	f.Fuzz(func(t *testing.T, k string, v []byte) {
		i, e, err := decodeEntry(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v is not ErrCorrupt", err)
			}
			return
		}
		if i >= ShardBlocks || e.Loc == 0 {
			t.Fatalf("accepted block %d location %#x", i, e.Loc)
		}
		if entryKey(i) != k || !bytes.Equal(encodeEntry(e), v) {
			t.Fatalf("block %d entry %+v does not encode back to its input", i, e)
		}
	})
}

// FuzzDecodeHeaders: the store and device header decoders never panic;
// what they accept is a header they would write, and what they refuse
// is ErrCorrupt.
func FuzzDecodeHeaders(f *testing.F) {
	f.Add(StoreHeader{Format: formatPool, BlockSize: BlockSize, IndexShards: 64, Hash: "sha256", UUID: "u"}.encode())
	f.Add(DeviceHeader{Format: formatPool, Name: "vm1", ID: 7, Size: 1 << 20}.encode())
	f.Add([]byte(`{"format":2,"name":"a/b","id":1,"size":4096}`))
	f.Add([]byte(`{"format":2,"block_size":4096,"index_shards":3,"hash":"sha256","uuid":"x"}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := decodeStoreHeader(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("store header: %v is not ErrCorrupt", err)
			}
		} else if h2, err := decodeStoreHeader(h.encode()); err != nil || h2 != h {
			t.Fatalf("store header %+v does not round-trip: %+v %v", h, h2, err)
		}
		if h, err := decodeDeviceHeader(b); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("device header: %v is not ErrCorrupt", err)
			}
		} else if h2, err := decodeDeviceHeader(h.encode()); err != nil || h2 != h {
			t.Fatalf("device header %+v does not round-trip: %+v %v", h, h2, err)
		}
	})
}
