package pool

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"blockhash/corrupt"
)

// BlockSize is the size of a device block.
const BlockSize = 4096

// KeySize is the size of a content key: SHA-256 digest + CRC-32C (the
// engine's index key).
const KeySize = 36

// ShardBlocks is how many device blocks one map shard object covers
// (256 MiB of device): at most this many omap entries per object, well
// under the 200,000 keys above which Ceph warns of a large omap object.
const ShardBlocks = 1 << 16

// Object names of a pool store (besides the rados package's packs,
// index shards, hosts and GC state).
const (
	storeObject  = "bh.store"     // the store header (StoreHeader, JSON)
	devPrefix    = "bh.dev."      // bh.dev.<name>: a device's header and lease
	mapPrefix    = "bh.map."      // bh.map.<device id hex>.<shard>: a map shard
	hostsState   = "bh.hoststate" // omap host id -> HostState (JSON)
	formatPool   = 2              // 2: map entry keys in hex (1 had binary keys, unreadable past 1,000 entries a shard)
	maxNameBytes = 128
)

func devObject(name string) string { return devPrefix + name }

func mapObject(id uint64, shard uint64) string {
	return mapPrefix + strconv.FormatUint(id, 16) + "." + strconv.FormatUint(shard, 10)
}

// StoreHeader is the store's header object: written once by init.
type StoreHeader struct {
	Format      int    `json:"format"`
	BlockSize   int    `json:"block_size"`
	IndexShards uint32 `json:"index_shards"`
	Hash        string `json:"hash"`
	UUID        string `json:"uuid"`
}

func (h StoreHeader) encode() []byte {
	b, _ := json.Marshal(h)
	return b
}

// decodeStoreHeader reads a store header; anything but a sound format-1
// header is corrupt.ErrCorrupt.
func decodeStoreHeader(b []byte) (StoreHeader, error) {
	var h StoreHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%w: store header: %v", corrupt.ErrCorrupt, err)
	}
	if h.Format != formatPool || h.BlockSize != BlockSize || h.IndexShards == 0 || h.IndexShards&(h.IndexShards-1) != 0 || h.Hash != "sha256" || h.UUID == "" {
		return h, fmt.Errorf("%w: store header %+v", corrupt.ErrCorrupt, h)
	}
	return h, nil
}

// DeviceHeader is a device's header object (bh.dev.<name>), written once
// at create (a grow rewrites Size under the lease).
type DeviceHeader struct {
	Format int    `json:"format"`
	Name   string `json:"name"`
	ID     uint64 `json:"id"` // names its map shards; random, never reused
	Size   int64  `json:"size"`
}

func (h DeviceHeader) encode() []byte {
	b, _ := json.Marshal(h)
	return b
}

func decodeDeviceHeader(b []byte) (DeviceHeader, error) {
	var h DeviceHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("%w: device header: %v", corrupt.ErrCorrupt, err)
	}
	if h.Format != formatPool || checkName(h.Name) != nil || h.ID == 0 || h.Size <= 0 || h.Size%BlockSize != 0 {
		return h, fmt.Errorf("%w: device header %+v", corrupt.ErrCorrupt, h)
	}
	return h, nil
}

// checkName refuses a device name that cannot be an object name part.
func checkName(name string) error {
	if name == "" || len(name) > maxNameBytes || strings.ContainsAny(name, "/\x00 \t\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("%w: device name %q (1-%d bytes, no slash, space or leading dot)", ErrInvalid, name, maxNameBytes)
	}
	return nil
}

// A map entry is one omap pair of a shard: key = the block's index in
// the shard (8 lowercase hex digits, so omap order is block order), value =
// content key (36 bytes) + location (8 bytes, little endian) + CRC-32C
// of the 44 bytes before it (4 bytes, little endian). The key holds no
// NUL byte: librados takes the key a listing resumes after as a C
// string, and the OSD returns at most osd_max_omap_entries_per_request
// (1,024) entries a read, so a shard is read in pages (4-byte binary
// keys all began with a NUL: every page restarted at the first key).
const (
	entryKeySize   = 8
	entryValueSize = KeySize + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Entry is one mapped block: its content key and where its bytes are.
type Entry struct {
	Key [KeySize]byte
	Loc uint64
}

func entryKey(blockInShard uint64) string {
	return fmt.Sprintf("%08x", uint32(blockInShard))
}

func encodeEntry(e Entry) []byte {
	b := make([]byte, entryValueSize)
	copy(b, e.Key[:])
	binary.LittleEndian.PutUint64(b[KeySize:], e.Loc)
	binary.LittleEndian.PutUint32(b[KeySize+8:], crc32.Checksum(b[:KeySize+8], castagnoli))
	return b
}

// decodeEntry reads one omap pair of a shard; a damaged one is
// corrupt.ErrCorrupt.
func decodeEntry(k string, v []byte) (uint64, Entry, error) {
	var e Entry
	if len(k) != entryKeySize {
		return 0, e, fmt.Errorf("%w: map entry key of %d bytes", corrupt.ErrCorrupt, len(k))
	}
	i, err := strconv.ParseUint(k, 16, 32)
	if err != nil || entryKey(i) != k {
		return 0, e, fmt.Errorf("%w: map entry key %q", corrupt.ErrCorrupt, k)
	}
	if i >= ShardBlocks {
		return 0, e, fmt.Errorf("%w: map entry for block %d of a shard of %d", corrupt.ErrCorrupt, i, ShardBlocks)
	}
	if len(v) != entryValueSize {
		return 0, e, fmt.Errorf("%w: map entry of %d bytes", corrupt.ErrCorrupt, len(v))
	}
	if crc32.Checksum(v[:KeySize+8], castagnoli) != binary.LittleEndian.Uint32(v[KeySize+8:]) {
		return 0, e, fmt.Errorf("%w: map entry for block %d fails its checksum", corrupt.ErrCorrupt, i)
	}
	copy(e.Key[:], v)
	e.Loc = binary.LittleEndian.Uint64(v[KeySize:])
	if e.Loc == 0 {
		return 0, e, fmt.Errorf("%w: map entry for block %d has no location", corrupt.ErrCorrupt, i)
	}
	return i, e, nil
}

// HostState is what the pool records of a host in bh.hoststate: whether
// it serves, and the client instance that does.
type HostState struct {
	Name  string `json:"name"`
	State string `json:"state"` // "live", "stopped" or "fenced"
	Addr  string `json:"addr"`  // the client instance's address (blocklisting names it)
}
