package ublk

import (
	"fmt"
	"math/bits"

	"github.com/rs/zerolog"
)

// Config describes a device to create with New. Zero fields take the
// defaults noted.
type Config struct {
	// ID is the wanted device number N of /dev/ublkbN; -1 lets the kernel
	// pick a free one. (The zero value asks for device 0.)
	ID int
	// Queues is the number of hardware queues (default 1); the kernel
	// clamps it to the CPU count. Each queue is served by its own OS thread.
	Queues int
	// Depth is the number of tags per queue (default 128, max 4096).
	Depth int
	// Size is the device size in bytes (required), a multiple of
	// LogicalBlockSize.
	Size int64
	// LogicalBlockSize is 512 (default) or 4096.
	LogicalBlockSize int
	// PhysicalBlockSize is a power of two >= LogicalBlockSize (default 4096).
	PhysicalBlockSize int
	// IOMin and IOOpt are the minimum and optimal I/O sizes advertised to
	// the block layer, powers of two (default PhysicalBlockSize).
	IOMin, IOOpt int
	// MaxIOBytes is the largest single request and the per-tag buffer
	// size: a multiple of 4096, at most 32 MiB (default 512 KiB).
	MaxIOBytes int
	// DiscardGranularity in bytes (default 4096). MaxDiscardBytes caps one
	// DISCARD or WRITE_ZEROES request (default 1 GiB).
	DiscardGranularity int
	MaxDiscardBytes    int64
	// NoDiscard leaves out the discard parameters: no DISCARD or
	// WRITE_ZEROES requests reach the backend.
	NoDiscard bool
	// NoRecovery turns off UBLK_F_USER_RECOVERY(_REISSUE): the device then
	// goes away when the serving process dies.
	NoRecovery bool
	// UserCopy creates the device with UBLK_F_USER_COPY: request data
	// moves with pread/pwrite on /dev/ublkcN instead of through buffers
	// whose addresses the queue hands the kernel. A PayloadBackend
	// (MemBackend) then copies each request's data once, straight between
	// its memory and the kernel's request pages; other backends are served
	// through per-tag buffers, which costs one system call per READ or
	// WRITE more than without UserCopy. Needs Linux 6.5 or later.
	UserCopy bool
	// ReadOnly makes the device read-only.
	ReadOnly bool
	// Logger receives control-path events and debug-level per-I/O events;
	// nil means no logging.
	Logger *zerolog.Logger
}

// Defaults.
const (
	DefaultQueues     = 1
	DefaultDepth      = 128
	DefaultMaxIOBytes = 512 << 10
	maxIOBufBytes     = 1 << 25 // UBLK_IO_BUF_BITS: 32 MiB per tag
)

// withDefaults returns c with zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Queues == 0 {
		c.Queues = DefaultQueues
	}
	if c.Depth == 0 {
		c.Depth = DefaultDepth
	}
	if c.LogicalBlockSize == 0 {
		c.LogicalBlockSize = 512
	}
	if c.PhysicalBlockSize == 0 {
		c.PhysicalBlockSize = 4096
		if c.LogicalBlockSize > 4096 {
			c.PhysicalBlockSize = c.LogicalBlockSize
		}
	}
	if c.IOMin == 0 {
		c.IOMin = c.PhysicalBlockSize
	}
	if c.IOOpt == 0 {
		c.IOOpt = c.PhysicalBlockSize
	}
	if c.MaxIOBytes == 0 {
		c.MaxIOBytes = DefaultMaxIOBytes
	}
	if c.DiscardGranularity == 0 {
		c.DiscardGranularity = 4096
	}
	if c.MaxDiscardBytes == 0 {
		c.MaxDiscardBytes = 1 << 30
	}
	return c
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func log2(n int) uint8 { return uint8(bits.TrailingZeros(uint(n))) }

// validate checks a Config that has its defaults applied.
func (c Config) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...)
	}
	switch {
	case c.ID < -1:
		return bad("ID %d (want -1 or a device number)", c.ID)
	case c.Queues < 1 || c.Queues > MaxQueues:
		return bad("Queues %d (want 1..%d)", c.Queues, MaxQueues)
	case c.Depth < 1 || c.Depth > MaxQueueDepth:
		return bad("Depth %d (want 1..%d)", c.Depth, MaxQueueDepth)
	case c.LogicalBlockSize != 512 && c.LogicalBlockSize != 4096:
		return bad("LogicalBlockSize %d (want 512 or 4096)", c.LogicalBlockSize)
	case !isPow2(c.PhysicalBlockSize) || c.PhysicalBlockSize < c.LogicalBlockSize:
		return bad("PhysicalBlockSize %d (want a power of two >= %d)", c.PhysicalBlockSize, c.LogicalBlockSize)
	case !isPow2(c.IOMin) || !isPow2(c.IOOpt):
		return bad("IOMin %d / IOOpt %d (want powers of two)", c.IOMin, c.IOOpt)
	case c.MaxIOBytes < 4096 || c.MaxIOBytes%4096 != 0 || c.MaxIOBytes > maxIOBufBytes:
		return bad("MaxIOBytes %d (want a multiple of 4096 up to %d)", c.MaxIOBytes, maxIOBufBytes)
	case c.MaxIOBytes < c.LogicalBlockSize:
		return bad("MaxIOBytes %d below the logical block size", c.MaxIOBytes)
	case c.Size <= 0 || c.Size%int64(c.LogicalBlockSize) != 0:
		return bad("Size %d (want a positive multiple of %d)", c.Size, c.LogicalBlockSize)
	case !c.NoDiscard && (!isPow2(c.DiscardGranularity) || c.DiscardGranularity < c.LogicalBlockSize):
		return bad("DiscardGranularity %d (want a power of two >= %d)", c.DiscardGranularity, c.LogicalBlockSize)
	case !c.NoDiscard && (c.MaxDiscardBytes < int64(c.DiscardGranularity) || c.MaxDiscardBytes>>sectorShift > 0xFFFFFFFF):
		return bad("MaxDiscardBytes %d", c.MaxDiscardBytes)
	}
	return nil
}

// flags returns the UBLK_F_* flags to ask for in ADD_DEV.
func (c Config) flags() uint64 {
	f := FeatureCmdIoctlEncode
	if !c.NoRecovery {
		f |= FeatureUserRecovery | FeatureUserRecoveryReissue
	}
	if c.UserCopy {
		f |= FeatureUserCopy
	}
	return f
}

// kernelParams builds the SET_PARAMS payload. Flush and FUA reach the
// backend because the basic attributes announce a volatile write cache with
// FUA support; discard parameters make DISCARD and WRITE_ZEROES reach it.
func (c Config) kernelParams() params {
	p := params{Types: paramTypeBasic}
	p.Basic = paramBasic{
		Attrs:           AttrVolatileCache | AttrFUA,
		LogicalBSShift:  log2(c.LogicalBlockSize),
		PhysicalBSShift: log2(c.PhysicalBlockSize),
		IOMinShift:      log2(c.IOMin),
		IOOptShift:      log2(c.IOOpt),
		MaxSectors:      uint32(c.MaxIOBytes >> sectorShift),
		DevSectors:      uint64(c.Size >> sectorShift),
	}
	if c.ReadOnly {
		p.Basic.Attrs |= AttrReadOnly
	}
	if !c.NoDiscard {
		p.Types |= paramTypeDiscard
		maxSectors := uint32(c.MaxDiscardBytes >> sectorShift)
		p.Discard = paramDiscard{
			DiscardGranularity:    uint32(c.DiscardGranularity),
			MaxDiscardSectors:     maxSectors,
			MaxWriteZeroesSectors: maxSectors,
			MaxDiscardSegments:    1,
		}
	}
	return p
}
