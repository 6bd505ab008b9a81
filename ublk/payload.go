package ublk

import (
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// User-copy addressing of /dev/ublkcN (UBLK_F_USER_COPY, include/uapi/linux/ublk_cmd.h):
// the data of request (qid, tag) is at file offset
// UBLKSRV_IO_BUF_OFFSET + qid<<UBLK_QID_OFF + tag<<UBLK_TAG_OFF + byte offset.
const (
	userCopyBase   = 0x80000000 // UBLKSRV_IO_BUF_OFFSET
	userCopyTagOff = 25         // UBLK_TAG_OFF (= UBLK_IO_BUF_BITS)
	userCopyQIDOff = 41         // UBLK_QID_OFF
)

// userCopyOffset returns the /dev/ublkcN offset of the first byte of the
// data of request (qid, tag).
func userCopyOffset(qid, tag uint16) int64 {
	return userCopyBase + int64(qid)<<userCopyQIDOff + int64(tag)<<userCopyTagOff
}

// Payload is the data of one READ or WRITE request in flight on a device
// served with UBLK_F_USER_COPY (Config.UserCopy): the kernel's own request
// pages, reached with pread and pwrite on /dev/ublkcN. A READ's payload is
// written (WriteAt), a WRITE's is read (ReadAt), at byte offsets from the
// request's start; the kernel refuses the other direction. A Payload is
// valid only until its request is committed, that is until the
// PayloadBackend method it was passed to returns.
type Payload struct {
	fd   int
	base int64
	n    int
}

// Len returns the request's length in bytes.
func (p Payload) Len() int { return p.n }

func (p Payload) check(b []byte, off int64) error {
	if off < 0 || off > int64(p.n) || int64(len(b)) > int64(p.n)-off {
		return fmt.Errorf("ublk: payload range [%d, +%d) outside [0, %d): %w", off, len(b), p.n, io.ErrShortBuffer)
	}
	return nil
}

// ReadAt copies the request's data at off into b (the data of a WRITE).
func (p Payload) ReadAt(b []byte, off int64) (int, error) {
	if err := p.check(b, off); err != nil {
		return 0, err
	}
	return fullIO(rawPread, p.fd, b, p.base+off)
}

// WriteAt copies b into the request's data at off (the data of a READ).
func (p Payload) WriteAt(b []byte, off int64) (int, error) {
	if err := p.check(b, off); err != nil {
		return 0, err
	}
	return fullIO(rawPwrite, p.fd, b, p.base+off)
}

// fullIO repeats a pread or pwrite until b is done: the driver may copy
// less than asked when a request's pages end early.
func fullIO(op func(int, []byte, int64) (int, error), fd int, b []byte, off int64) (int, error) {
	done := 0
	for done < len(b) {
		n, err := op(fd, b[done:], off+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, io.ErrUnexpectedEOF
		}
		done += n
	}
	return done, nil
}

// PayloadBackend is implemented by backends that move request data
// straight between their own memory and the kernel's request pages: on a
// device served with Config.UserCopy, READ and WRITE requests then cost one
// copy (the kernel's, inside pread or pwrite) instead of two (the kernel's
// into a per-tag buffer, then the backend's out of it), and the queue
// keeps no per-tag buffers. Other backends on a UserCopy device are served
// through a per-tag buffer.
type PayloadBackend interface {
	// ReadTo serves a READ of p.Len() bytes at device offset off by
	// writing them to p.
	ReadTo(p Payload, off int64) error
	// WriteFrom serves a WRITE of p.Len() bytes at device offset off by
	// reading them from p; fua asks for the write to be durable on return
	// (as WriteAtFUA).
	WriteFrom(p Payload, off int64, fua bool) error
}

// rawPread and rawPwrite are pread and pwrite as raw system calls, which
// skip the Go scheduler's bookkeeping (see RingOptions.NoSleepSubmit). On
// /dev/ublkcN they are memory copies between a request's pages and ours
// and never wait for anything else.
func rawPread(fd int, b []byte, off int64) (int, error) {
	return rawRW(unix.SYS_PREAD64, fd, b, off)
}

func rawPwrite(fd int, b []byte, off int64) (int, error) {
	return rawRW(unix.SYS_PWRITE64, fd, b, off)
}

func rawRW(trap uintptr, fd int, b []byte, off int64) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(off), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
