package ublk

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ring is a minimal io_uring instance: one submission queue and one
// completion queue mmapped from the kernel.
//
// A Ring is not safe for concurrent use: one goroutine owns it. Rings that
// carry ublk data-path commands must moreover stay on one OS thread for
// their whole life (runtime.LockOSThread), because the ublk driver binds a
// queue to the task that fetched on it.
//
// Memory ordering: the SQ tail is published with an atomic store (release)
// after the SQEs are written; the CQ tail is read with an atomic load
// (acquire) before the CQEs are read, and the CQ head is released with an
// atomic store after they have been copied out. Go's sync/atomic operations
// are sequentially consistent, which is at least acquire/release.
//
// Buffers named by an SQE's addr must stay valid and unmoved until its CQE
// arrives: use memory that the Go garbage collector does not own (see
// AllocBuffer) or keep the memory pinned.
type Ring struct {
	fd      int
	sqeSize uintptr // 64, or 128 with SQE128

	sqMem  []byte // SQ ring mmap (also the CQ ring with IORING_FEAT_SINGLE_MMAP)
	cqMem  []byte // CQ ring mmap, nil when shared with sqMem
	sqeMem []byte // SQE array mmap

	sqHead    *uint32 // written by the kernel
	sqTail    *uint32 // written by us (release)
	sqMask    uint32
	sqEntries uint32

	cqHead    *uint32 // written by us (release)
	cqTail    *uint32 // written by the kernel (acquire)
	cqMask    uint32
	cqEntries uint32
	cqes      unsafe.Pointer

	// sqeTail counts SQEs handed out by GetSQE; the kernel sees them once
	// the tail is published by submit.
	sqeTail uint32

	noSleep bool // RingOptions.NoSleepSubmit
}

// RingOptions tunes NewRing.
type RingOptions struct {
	// SQE128 makes every SQE 128 bytes, giving URING_CMD an 80-byte command
	// area (required by /dev/ublk-control).
	SQE128 bool
	// CQEntries, if non-zero, sizes the completion queue (default: twice the
	// submission queue).
	CQEntries uint32
	// SingleThread is for a ring that one OS thread creates, submits to
	// and reaps, always waiting with GETEVENTS (a ublk queue thread): it
	// asks for COOP_TASKRUN|SINGLE_ISSUER|DEFER_TASKRUN, so completions
	// are run when that thread enters the ring instead of interrupting
	// it. Kernels without them (before 6.1) get a plain ring.
	SingleThread bool
	// NoSleepSubmit is for a ring whose commands never sleep while being
	// submitted (ublk FETCH_REQ and COMMIT_AND_FETCH_REQ, POLL_ADD, NOP):
	// enters that do not wait (Submit, Poll) are then raw system calls,
	// which skip the Go scheduler's system-call bookkeeping (about 0.5 µs
	// each under QEMU emulation, a tenth of that natively). A raw call
	// keeps its P, so it must not be used for commands that can block in
	// submission, such as the control commands.
	NoSleepSubmit bool
}

// NewRing creates an io_uring with at least entries submission slots.
func NewRing(entries uint32, opt RingOptions) (*Ring, error) {
	var p uringParams
	if opt.SQE128 {
		p.Flags |= setupSQE128
	}
	if opt.CQEntries != 0 {
		p.Flags |= setupCQSize
		p.CQEntries = opt.CQEntries
	}
	if opt.SingleThread {
		q := p
		q.Flags |= setupCoopTaskrun | setupSingleIssuer | setupDeferTaskrun
		fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&q)), 0)
		if errno == 0 {
			return newRing(int(fd), &q, opt)
		}
		if errno != unix.EINVAL {
			return nil, fmt.Errorf("ublk: io_uring_setup(%d): %w", entries, errno)
		}
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("ublk: io_uring_setup(%d): %w", entries, errno)
	}
	return newRing(int(fd), &p, opt)
}

func newRing(fd int, p *uringParams, opt RingOptions) (*Ring, error) {
	r := &Ring{fd: fd, sqeSize: 64, noSleep: opt.NoSleepSubmit}
	if opt.SQE128 {
		r.sqeSize = 128
	}
	if err := r.mapRings(p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Ring) mapRings(p *uringParams) error {
	sqSize := uintptr(p.SQOff.Array) + uintptr(p.SQEntries)*4
	cqSize := uintptr(p.CQOff.Cqes) + uintptr(p.CQEntries)*unsafe.Sizeof(CQE{})
	single := p.Features&featSingleMmap != 0
	if single && cqSize > sqSize {
		sqSize = cqSize
	}
	var err error
	r.sqMem, err = unix.Mmap(r.fd, offSQRing, int(sqSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("ublk: mmap SQ ring: %w", err)
	}
	cqMem := r.sqMem
	if !single {
		r.cqMem, err = unix.Mmap(r.fd, offCQRing, int(cqSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("ublk: mmap CQ ring: %w", err)
		}
		cqMem = r.cqMem
	}
	r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(uintptr(p.SQEntries)*r.sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("ublk: mmap SQEs: %w", err)
	}
	sq := unsafe.Pointer(&r.sqMem[0])
	r.sqHead = (*uint32)(unsafe.Add(sq, p.SQOff.Head))
	r.sqTail = (*uint32)(unsafe.Add(sq, p.SQOff.Tail))
	r.sqMask = *(*uint32)(unsafe.Add(sq, p.SQOff.RingMask))
	r.sqEntries = *(*uint32)(unsafe.Add(sq, p.SQOff.RingEntries))
	// Identity-map the SQ index array once: slot i always names SQE i.
	array := unsafe.Slice((*uint32)(unsafe.Add(sq, p.SQOff.Array)), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	cq := unsafe.Pointer(&cqMem[0])
	r.cqHead = (*uint32)(unsafe.Add(cq, p.CQOff.Head))
	r.cqTail = (*uint32)(unsafe.Add(cq, p.CQOff.Tail))
	r.cqMask = *(*uint32)(unsafe.Add(cq, p.CQOff.RingMask))
	r.cqEntries = *(*uint32)(unsafe.Add(cq, p.CQOff.RingEntries))
	r.cqes = unsafe.Add(cq, p.CQOff.Cqes)
	r.sqeTail = atomic.LoadUint32(r.sqTail)
	return nil
}

// Close unmaps the rings and closes the io_uring file descriptor. The kernel
// cancels requests still in flight.
func (r *Ring) Close() error {
	for _, m := range [][]byte{r.sqeMem, r.cqMem, r.sqMem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqMem, r.sqMem = nil, nil, nil
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Fd returns the io_uring file descriptor.
func (r *Ring) Fd() int { return r.fd }

// SQEntries returns the number of submission slots.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }

// CQEntries returns the number of completion slots.
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// GetSQE returns a zeroed submission slot, or nil if the submission queue
// is full (call Submit first). The SQE is owned by the caller until the
// next Submit/SubmitAndWait.
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqeTail-head >= r.sqEntries {
		return nil
	}
	p := unsafe.Pointer(&r.sqeMem[uintptr(r.sqeTail&r.sqMask)*r.sqeSize])
	clear(unsafe.Slice((*byte)(p), r.sqeSize))
	r.sqeTail++
	return (*SQE)(p)
}

// cmdArea returns the command area of sqe (16 bytes, or 80 with SQE128).
func (r *Ring) cmdArea(sqe *SQE) []byte {
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(sqe), sqeCmdOffset)), r.sqeSize-sqeCmdOffset)
}

// pending returns how many SQEs are prepared but not yet consumed by the
// kernel.
func (r *Ring) pending() uint32 {
	return r.sqeTail - atomic.LoadUint32(r.sqHead)
}

// Submit publishes the prepared SQEs and tells the kernel about them,
// without waiting for completions. It returns the number submitted.
func (r *Ring) Submit() (int, error) {
	return r.enter(0, false)
}

// SubmitAndWait publishes the prepared SQEs and waits until at least
// waitNr completions are available.
func (r *Ring) SubmitAndWait(waitNr uint32) (int, error) {
	return r.enter(waitNr, false)
}

// Poll publishes the prepared SQEs and has the kernel post the
// completions it can without waiting: on a SingleThread ring (deferred
// task work) completions reach the CQ only when the owner enters the ring
// asking for events, which Poll does without blocking. It returns the
// number submitted.
func (r *Ring) Poll() (int, error) {
	return r.enter(0, true)
}

// enter is the one place that calls io_uring_enter. It publishes the SQ tail
// (store-release) and retries on EINTR, which Go's preemption signals cause
// during a blocking wait. On EINTR nothing was consumed or the consumed part
// is visible in the SQ head, so the retry recomputes what is left to submit.
// getEvents asks for completions even when not waiting (Poll).
func (r *Ring) enter(waitNr uint32, getEvents bool) (int, error) {
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	submitted := 0
	for {
		toSubmit := r.pending()
		var flags uintptr
		wait := waitNr
		if wait > 0 && r.CQReady() >= wait {
			wait = 0
		}
		if wait > 0 || getEvents {
			flags |= enterGetEvents
		}
		if toSubmit == 0 && flags == 0 {
			return submitted, nil
		}
		var n uintptr
		var errno unix.Errno
		if wait == 0 && r.noSleep {
			n, _, errno = unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), 0, flags, 0, 0)
		} else {
			n, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(wait), flags, 0, 0)
		}
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return submitted, fmt.Errorf("ublk: io_uring_enter: %w", errno)
		}
		submitted += int(n)
		if r.pending() == 0 && (wait == 0 || r.CQReady() >= wait) {
			return submitted, nil
		}
		if int(n) == 0 && wait == 0 {
			// The kernel refused to consume more SQEs without an error.
			return submitted, fmt.Errorf("ublk: io_uring_enter consumed 0 of %d SQEs: %w", toSubmit, unix.EBUSY)
		}
		getEvents = false // the events were asked for; what is left is submission
	}
}

// CQReady returns the number of completions waiting to be reaped.
func (r *Ring) CQReady() uint32 {
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// ReapCQEs copies up to len(out) completions into out, marks them seen and
// returns how many it copied.
func (r *Ring) ReapCQEs(out []CQE) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail) // acquire: CQEs up to tail are written
	n := 0
	for head != tail && n < len(out) {
		out[n] = *(*CQE)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*unsafe.Sizeof(CQE{})))
		head++
		n++
	}
	atomic.StoreUint32(r.cqHead, head) // release the slots to the kernel
	return n
}

// WaitCQE submits what is prepared and returns the next completion,
// blocking until there is one.
func (r *Ring) WaitCQE() (CQE, error) {
	var c [1]CQE
	for {
		if r.ReapCQEs(c[:]) == 1 {
			return c[0], nil
		}
		if _, err := r.SubmitAndWait(1); err != nil {
			return CQE{}, err
		}
	}
}

// RegisterEventfd asks the kernel to signal efd whenever a completion is
// posted to this ring (IORING_REGISTER_EVENTFD).
func (r *Ring) RegisterEventfd(efd int) error {
	fd32 := int32(efd)
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerEventfd, uintptr(unsafe.Pointer(&fd32)), 1, 0, 0)
	if errno != 0 {
		return fmt.Errorf("ublk: io_uring_register(EVENTFD): %w", errno)
	}
	return nil
}

// UnregisterEventfd undoes RegisterEventfd.
func (r *Ring) UnregisterEventfd() error {
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), unregisterEventfd, 0, 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("ublk: io_uring_register(UNREGISTER_EVENTFD): %w", errno)
	}
	return nil
}

// PrepNop fills sqe with a NOP.
func PrepNop(sqe *SQE, userData uint64) {
	sqe.Opcode = OpNop
	sqe.UserData = userData
}

// PrepRead fills sqe with a read of len(buf) bytes at off from fd. buf must
// stay valid and unmoved until the completion (see AllocBuffer).
func PrepRead(sqe *SQE, fd int, buf []byte, off uint64, userData uint64) {
	sqe.Opcode = OpRead
	sqe.Fd = int32(fd)
	sqe.Off = off
	if len(buf) > 0 {
		sqe.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
	}
	sqe.Len = uint32(len(buf))
	sqe.UserData = userData
}

// PrepWrite fills sqe with a write of buf at off to fd. buf must stay valid
// and unmoved until the completion (see AllocBuffer).
func PrepWrite(sqe *SQE, fd int, buf []byte, off uint64, userData uint64) {
	PrepRead(sqe, fd, buf, off, userData)
	sqe.Opcode = OpWrite
}

// PrepPollAdd fills sqe with a one-shot poll for events (POLLIN, ...) on fd.
func PrepPollAdd(sqe *SQE, fd int, events uint32, userData uint64) {
	sqe.Opcode = OpPollAdd
	sqe.Fd = int32(fd)
	sqe.OpFlags = events // poll32_events (little-endian)
	sqe.UserData = userData
}

// PrepUringCmd fills sqe with IORING_OP_URING_CMD cmdOp on fd and copies cmd
// into the SQE's command area. It fails if cmd does not fit (16 bytes in a
// plain ring, 80 with SQE128).
func (r *Ring) PrepUringCmd(sqe *SQE, fd int, cmdOp uint32, cmd []byte, userData uint64) error {
	area := r.cmdArea(sqe)
	if len(cmd) > len(area) {
		return fmt.Errorf("ublk: uring_cmd payload of %d bytes does not fit the %d-byte command area", len(cmd), len(area))
	}
	sqe.Opcode = OpUringCmd
	sqe.Fd = int32(fd)
	sqe.Off = uint64(cmdOp) // cmd_op is the low 32 bits of off (little-endian)
	sqe.UserData = userData
	copy(area, cmd)
	return nil
}

// AllocBuffer returns size bytes of anonymous mmapped memory, page aligned,
// outside the Go heap: safe to hand to the kernel by address. Release it
// with FreeBuffer.
func AllocBuffer(size int) ([]byte, error) {
	if size <= 0 {
		return nil, fmt.Errorf("ublk: buffer size %d", size)
	}
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("ublk: mmap %d-byte buffer: %w", size, err)
	}
	return b, nil
}

// FreeBuffer releases memory from AllocBuffer.
func FreeBuffer(b []byte) error {
	if b == nil {
		return nil
	}
	return unix.Munmap(b)
}

// asBytes views the memory of *v as a byte slice (for copying kernel
// structs into and out of command areas and mmapped buffers).
func asBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}
