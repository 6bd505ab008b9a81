// Package rados is the start of a Blockhash store shared by several hosts
// on a Ceph RADOS pool (issue 12). The design, with its object layout,
// write and read paths, lease hand-over, garbage collection and failure
// cases, is design.md beside this file; read it before the code.
//
// # Build
//
// Every file that uses librados (through go-ceph, cgo) carries the build
// tag `rados`, so the default build stays pure Go with CGO_ENABLED=0.
// Files without the tag (this one, names.go, clsenc.go, errors.go) hold
// what needs no cluster: object names, the location encoding, the inputs
// of Ceph object classes. `make rados` installs the Ceph packages if they
// are missing (tests/ceph/install), starts a one-node test cluster
// (tests/ceph/cluster), runs `go test -tags rados ./rados/...` and stops
// the cluster. Tests that need a cluster skip, saying so, unless
// BLOCKHASH_CEPH_CONF names its ceph.conf (BLOCKHASH_CEPH_POOL, default
// "bh", names the pool); each test works in a RADOS namespace of its own.
//
// # Types
//
//   - Conn: a connection to one pool and namespace.
//   - PackWriter: one host's pack being filled (append 4 KiB blocks, seal).
//   - Store: one host's block placement: fills packs one after another and,
//     after a restart, seals the pack the last run left open.
//   - Index: the sharded content index (put-if-absent, lookup,
//     remove-if-unchanged).
//   - Blocks: blockstore.Blocks for one host (Store + reads of a block
//     with its key in one op); it passes the suite blockstest.
//   - Lease: a device's lease (cls_lock): acquire, refuse a second holder,
//     assert it in a write op, release, fence a dead holder.
//   - Loc: a block's location (host, pack, block), 64 bits.
//   - RegisterHost (hosts.go): a host's id from the registry, claimed by
//     put-if-absent.
//   - BeginRound, AckRound, Unacked, ServeRounds (rounds.go): the GC
//     round protocol's shared state: a round begun by compare-and-set,
//     each host's acknowledgement after it prepared.
//   - Refs (refs.go): a host's references and pin lock, published for a
//     round; Collect (gc.go): one garbage collection of two rounds.
//   - InsertQueue (queue.go): a host's new index entries held per shard
//     until worth an op; Flush returns the races lost for the merge.
//   - Compact (compact.go): live blocks of partly dead packs copied to the
//     leader's packs, index entries moved, forwards the hosts follow
//     (Refs.Remap) before the old packs die by collection.
//   - Check (check.go): a whole-pool check (packs consistent, no index
//     entry dangles, every published reference holds a block), read only.
//
// # Concurrency
//
// A Conn and an Index are safe for concurrent use (librados is). A
// PackWriter or a Store is used by one goroutine at a time (its host's
// writer). A
// Lease value is one holder's handle; its methods may be called from any
// goroutine but not concurrently with each other.
//
// The package never imports the engine or the index: keys are opaque byte
// strings of KeySize bytes. It imports blockstore for the Blocks seam
// only (Blocks, blocks.go, implements blockstore.Blocks). Object names and value layouts
// are in design.md section 2 and in loc.go.
package rados
