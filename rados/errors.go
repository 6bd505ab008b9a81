package rados

import "errors"

var (
	// ErrNoCluster means no test cluster is configured or reachable.
	ErrNoCluster = errors.New("rados: no cluster")
	// ErrExists means an exclusive create found the object (a pack name
	// taken by an earlier run).
	ErrExists = errors.New("rados: object exists")
	// ErrPackFull means an append would pass the pack's PackBlocks blocks.
	ErrPackFull = errors.New("rados: pack is full")
	// ErrSealed means an append to a sealed pack.
	ErrSealed = errors.New("rados: pack is sealed")
	// ErrLeaseHeld means another holder has the lease.
	ErrLeaseHeld = errors.New("rados: lease held by another host")
	// ErrNotHeld means an operation that needs the lease ran without it
	// (released, broken by a fence, never taken).
	ErrNotHeld = errors.New("rados: lease not held")
	// ErrFenced means this client was blocklisted: none of its operations
	// are applied any more.
	ErrFenced = errors.New("rados: this host is fenced (blocklisted)")
	// ErrBadValue means a stored value that does not decode.
	ErrBadValue = errors.New("rados: malformed stored value")
	// ErrArg means a bad argument (sizes, counts).
	ErrArg = errors.New("rados: bad argument")
)

var (
	// ErrRaced means a compare-and-set found another writer's value (a
	// second GC leader, a registration under the same name).
	ErrRaced = errors.New("rados: another writer changed it first")
	// ErrNoHostID means every host id is taken.
	ErrNoHostID = errors.New("rados: no free host id")
)

// ErrUnacked means hosts did not acknowledge a GC round: they are dead or
// cut off, and must be fenced before garbage collection goes on.
var ErrUnacked = errors.New("rados: hosts did not acknowledge the GC round")
