// Package ublk serves Linux ublk block devices (/dev/ublkbN) from Go: a
// minimal io_uring (ring.go), the ublk control protocol on
// /dev/ublk-control (control.go), per-queue I/O serving on /dev/ublkcN
// (queue.go, device.go), and two reference backends (MemBackend,
// FileBackend). It is written on golang.org/x/sys/unix only, against the
// Linux 6.12 uapi (uapi.go mirrors the kernel structs; uapi_test.go checks
// their layout). All syscalls and unsafe code of the project's ublk support
// live in this package.
//
// # What it owns
//
//   - Rings: io_uring setup (plain or SQE128), mmapped SQ/CQ, submission with
//     store-release of the SQ tail, completion reaping with load-acquire of
//     the CQ tail, io_uring_enter with EINTR retried in one place (Ring.enter).
//   - Control: ADD_DEV, SET_PARAMS, START_DEV, STOP_DEV, DEL_DEV(_ASYNC),
//     GET_DEV_INFO, GET_PARAMS, GET_FEATURES, START/END_USER_RECOVERY with
//     the ioctl-encoded opcodes. Buffers the kernel reads or writes through
//     a command's addr are mmapped (outside the Go heap) and live until the
//     completion arrives.
//   - Devices: the queues, their mmapped descriptor arrays and I/O buffers
//     (depth * MaxIOBytes per queue, outside the Go heap), and the life cycle
//     New -> Start -> Stop (or Abandon -> Recover in the next server).
//   - User copy (payload.go): with Config.UserCopy the device is created
//     with UBLK_F_USER_COPY and request data moves with pread/pwrite on
//     /dev/ublkcN at 0x80000000 + qid<<41 + tag<<25. A PayloadBackend
//     (MemBackend) then copies each request's data once, straight between
//     its memory and the kernel's request pages, and its queues keep no
//     buffers; other backends go through the per-tag buffers. Recover
//     follows the device's flags.
//
// # API
//
//	ctrl, err := ublk.OpenControl()          // ErrNotLoaded, ErrPermission
//	feats, err := ctrl.Features()            // UBLK_F_* mask; FeatureNames(feats)
//	dev, err := ublk.New(ctrl, ublk.Config{ID: -1, Queues: 2, Depth: 128,
//		Size: 1 << 30, LogicalBlockSize: 4096}, backend)
//	err = dev.Start()                        // returns once dev.BlockPath() is live
//	<-dev.Done()                             // queues ended (Stop or external STOP_DEV)
//	err = dev.Stop()                         // drain, STOP_DEV, DEL_DEV
//
//	// in a new process after the previous server died (or called Abandon):
//	dev, err = ublk.Recover(ctrl, id, backend, ublk.RecoverOptions{})
//	err = dev.Start()                        // FETCH every tag, END_USER_RECOVERY
//
//	info, err := ctrl.DeviceInfo(id); size, lbs, err := ctrl.DeviceSize(id)
//	err = ctrl.Delete(id)                    // STOP_DEV + DEL_DEV of any device
//
// Backend (backend.go) is what a device serves from: ReadAt, WriteAt,
// Flush, Discard, WriteZeroes, and optionally WriteAtFUA. Offsets and
// lengths are bytes, always multiples of 512: the kernel counts 512-byte
// sectors whatever the logical block size. Devices announce a volatile
// write cache with FUA and single-range discard, so FLUSH, FUA writes,
// DISCARD and WRITE_ZEROES all reach the backend. A FUA write goes to
// WriteAtFUA, or to WriteAt followed by Flush for backends without it.
//
// Devices are created with UBLK_F_USER_RECOVERY|UBLK_F_USER_RECOVERY_REISSUE
// (unless Config.NoRecovery): if the serving process dies, /dev/ublkbN stays,
// I/O waits, and Recover in a new process takes over; requests that were in
// flight are reissued to it.
//
// Errors are sentinel values wrapped with %w (errors.go): ErrNotLoaded
// (message contains "the ublk_drv kernel module is not loaded: modprobe
// ublk_drv"), ErrPermission (not root), ErrUnsupported (names the missing
// UBLK_F_* feature), ErrNoDevice, ErrExists, ErrBusy, ErrNotRecoverable,
// ErrInvalidConfig. A failed control command is a *CmdError carrying the
// errno.
//
// # Concurrency rules
//
//   - No package-level state: everything belongs to a Control or a Device,
//     so one process can serve many devices.
//   - Control is safe for concurrent use; each command runs on its own
//     short-lived SQE128 ring, so a blocking command (START_DEV waits for
//     the queues) does not hold up others.
//   - Each queue is one goroutine locked to one OS thread for its whole
//     life (runtime.LockOSThread, never unlocked, so the thread exits with
//     it): the 6.12 driver binds a queue to the task that fetched on it.
//     Only that thread touches the queue's ring. It spends its idle time
//     blocked in io_uring_enter, holding a P until the Go runtime's monitor
//     takes it back (up to 10 ms when the process looks idle): a server
//     should run with more Ps than queues plus cores (cmd/blockhash sets
//     GOMAXPROCS to twice the cores plus one per queue).
//   - The queue thread's loop: commit what workers finished, then collect
//     new requests with a non-blocking enter (Ring.Poll, a raw system call:
//     queue rings only carry commands that never sleep in submission), and
//     block in io_uring_enter only when there were none. Under load the
//     thread never sleeps and never pays the scheduler's system-call
//     hand-off; idle, it sleeps in the kernel.
//   - A backend that implements Inliner and says so (MemBackend) is served
//     on the queue thread itself, request by request: no hand-off.
//   - Otherwise requests run on worker goroutines, one per request, so at most Depth
//     per queue are in flight, and they complete in any order: a slow
//     request holds only its own tag. Workers post completions to a
//     mutex-guarded list and wake the queue thread through an eventfd that
//     the ring polls (IORING_OP_POLL_ADD); the queue thread then commits
//     them (COMMIT_AND_FETCH_REQ). Backends must be safe for concurrent use.
//   - Start issues START_DEV (or END_USER_RECOVERY) from the calling
//     goroutine after every queue has submitted its FETCH_REQs.
//   - Stop: STOP_DEV makes the kernel drain the requests in flight (the
//     queues keep serving them) and then abort every tag (-ENODEV, never
//     re-armed); the queue threads end, /dev/ublkcN is closed and
//     DEL_DEV_ASYNC removes the device without waiting for the openers of
//     /dev/ublkbN (a mount, a VM: their I/O fails from STOP_DEV on); the
//     device number is free again once the last of them closes it. Kernels
//     without DEL_DEV_ASYNC get DEL_DEV, which waits for them.
//   - Nothing on the per-request path logs above zerolog's debug level; a
//     Device logs through Config.Logger (default: nothing).
//
// Ring is exported for tests and tools; it is not safe for concurrent use.
package ublk
