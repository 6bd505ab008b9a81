package ublk

import (
	"encoding/binary"
	"fmt"
)

// request is one decoded I/O descriptor, validated against the device's
// limits. Offsets and lengths are bytes; the kernel counts 512-byte
// sectors whatever the logical block size.
type request struct {
	Op     uint8
	Flags  uint32 // op_flags with the op byte cleared (UBLK_IO_F_* bits)
	Off    int64
	Length int64
}

// FUA reports whether the request carries UBLK_IO_F_FUA.
func (r request) FUA() bool { return r.Flags&IOFlagFUA != 0 }

// decodeIODesc decodes a struct ublksrv_io_desc from its 24 little-endian
// bytes (the layout the kernel writes into the mmapped descriptor array).
func decodeIODesc(b []byte) (ioDesc, error) {
	if len(b) < sizeofIODesc {
		return ioDesc{}, fmt.Errorf("ublk: io descriptor of %d bytes, want %d", len(b), sizeofIODesc)
	}
	return ioDesc{
		OpFlags:     binary.LittleEndian.Uint32(b[0:]),
		NrSectors:   binary.LittleEndian.Uint32(b[4:]),
		StartSector: binary.LittleEndian.Uint64(b[8:]),
		Addr:        binary.LittleEndian.Uint64(b[16:]),
	}, nil
}

// parseRequest validates d for a device of devSize bytes whose per-tag
// buffer holds maxIO bytes.
func parseRequest(d ioDesc, devSize int64, maxIO int) (request, error) {
	r := request{Op: uint8(d.OpFlags), Flags: d.OpFlags &^ 0xff}
	if r.Op == IOOpFlush {
		// A flush carries no range; its start sector is often -1 (the
		// block layer's "no position").
		return r, nil
	}
	const maxSector = uint64(1)<<(63-sectorShift) - 1
	if d.StartSector > maxSector {
		return r, fmt.Errorf("ublk: start sector %d out of range", d.StartSector)
	}
	r.Off = int64(d.StartSector) << sectorShift
	r.Length = int64(d.NrSectors) << sectorShift
	switch r.Op {
	case IOOpRead, IOOpWrite:
		if r.Length > int64(maxIO) {
			return r, fmt.Errorf("ublk: %d-byte request exceeds the %d-byte buffer", r.Length, maxIO)
		}
	case IOOpDiscard, IOOpWriteZeroes:
	default:
		return r, fmt.Errorf("ublk: unsupported op %d", r.Op)
	}
	if r.Off > devSize || r.Length > devSize-r.Off {
		return r, fmt.Errorf("ublk: request [%d, +%d) beyond the %d-byte device", r.Off, r.Length, devSize)
	}
	return r, nil
}
