package main

import (
	"bytes"
	"encoding/binary"
)

// imageFormat names a disk image format that is not raw, found by its
// signature, and the name qemu-img gives it ("" for raw).
type imageFormat struct {
	name string // as a user knows it: qcow2, VMDK, VHDX, VDI, VHD
	qemu string // qemu-img's -f name
}

// headLen is how much of an image's start sniffFormat looks at.
const headLen = 4096

// sniffFormat returns the format whose signature head (the first bytes
// of an image, up to headLen) or tail (its last 512 bytes, nil when
// unknown) carries, or ok false for none: a raw image. Only fixed
// signatures at fixed offsets count, so raw data that merely looks like
// text is raw.
func sniffFormat(head, tail []byte) (f imageFormat, ok bool) {
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return imageFormat{"qcow2", "qcow2"}, true
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("COWD")),
		bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return imageFormat{"VMDK", "vmdk"}, true
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return imageFormat{"VHDX", "vhdx"}, true
	case len(head) >= 68 && binary.LittleEndian.Uint32(head[64:]) == 0xbeda107f:
		return imageFormat{"VDI", "vdi"}, true
	case bytes.HasPrefix(head, []byte("conectix")), bytes.HasPrefix(tail, []byte("conectix")):
		// A dynamic VHD starts with a copy of its footer; a fixed one
		// is raw data followed by the footer.
		return imageFormat{"VHD", "vpc"}, true
	}
	return imageFormat{}, false
}
