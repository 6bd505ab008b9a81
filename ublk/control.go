package ublk

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ControlPath is the ublk driver's control device.
const ControlPath = "/dev/ublk-control"

// Control is an open /dev/ublk-control. It is safe for concurrent use: every
// command runs on its own short-lived SQE128 ring with its own mmapped
// buffer, so a command that blocks in the kernel (START_DEV,
// END_USER_RECOVERY, DEL_DEV on old kernels) does not hold up commands for
// other devices.
type Control struct {
	fd     int
	closed atomic.Bool
	log    zerolog.Logger

	featOnce sync.Once // guards features and featErr
	features uint64
	featErr  error

	noAsyncDel atomic.Bool // the kernel refused DEL_DEV_ASYNC: use DEL_DEV
}

// OpenControl opens /dev/ublk-control. A missing device yields an error
// wrapping ErrNotLoaded, EPERM/EACCES one wrapping ErrPermission.
func OpenControl() (*Control, error) {
	return OpenControlLogger(zerolog.Nop())
}

// OpenControlLogger is OpenControl with a logger for control-path events.
func OpenControlLogger(log zerolog.Logger) (*Control, error) {
	fd, err := unix.Open(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
			return nil, fmt.Errorf("%w (open %s: %v)", ErrNotLoaded, ControlPath, err)
		case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
			return nil, fmt.Errorf("%w (open %s: %v)", ErrPermission, ControlPath, err)
		}
		return nil, fmt.Errorf("ublk: open %s: %w", ControlPath, err)
	}
	return &Control{fd: fd, log: log}, nil
}

// Close closes the control device. Devices created through it stay.
func (c *Control) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	return unix.Close(c.fd)
}

// ctrlBufSize is the size of the per-command mmapped buffer: enough for
// dev_info (64), params (112) and features (8).
const ctrlBufSize = 4096

// command runs one control command and waits for its completion. in is
// copied into a buffer outside the Go heap whose address goes into the
// command's addr; after the completion the first outLen bytes of that
// buffer are returned. bufLen is the len field (0: no buffer).
func (c *Control) command(name string, op uint32, devID uint32, data uint64, in []byte, bufLen int) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	ring, err := NewRing(4, RingOptions{SQE128: true})
	if err != nil {
		return nil, err
	}
	defer ring.Close()

	var buf []byte
	completed := false
	hdr := ctrlCmd{DevID: devID, QueueID: ctrlQueueIDNone, Data: data}
	if bufLen > 0 {
		buf, err = AllocBuffer(ctrlBufSize)
		if err != nil {
			return nil, err
		}
		// The buffer is unmapped only once the CQE has arrived. If waiting
		// failed the command may still be running in a kernel worker, so
		// the page is leaked rather than reused under it.
		defer func() {
			if completed {
				FreeBuffer(buf)
			}
		}()
		copy(buf, in)
		hdr.Addr = uint64(uintptr(unsafe.Pointer(&buf[0])))
		hdr.Len = uint16(bufLen)
	}
	sqe := ring.GetSQE()
	if err := ring.PrepUringCmd(sqe, c.fd, op, asBytes(&hdr), 1); err != nil {
		return nil, err
	}
	cqe, err := ring.WaitCQE()
	if err != nil {
		return nil, fmt.Errorf("ublk: %s: %w", name, err)
	}
	completed = true
	id := int(devID)
	if devID == devIDAny {
		id = -1
	}
	if cqe.Res < 0 {
		return nil, &CmdError{Cmd: name, DevID: id, Errno: errnoResult(cqe.Res)}
	}
	c.log.Debug().Str("cmd", name).Int("dev", id).Int32("res", cqe.Res).Msg("ublk control command")
	if bufLen == 0 {
		return nil, nil
	}
	out := make([]byte, bufLen)
	copy(out, buf)
	return out, nil
}

// Features returns the kernel's supported UBLK_F_* flags (GET_FEATURES,
// Linux 6.5+). The answer is cached.
func (c *Control) Features() (uint64, error) {
	c.featOnce.Do(func() {
		out, err := c.command("GET_FEATURES", uCmdGetFeatures, 0, 0, nil, ublkFeaturesLen)
		if err != nil {
			var ce *CmdError
			if errors.As(err, &ce) && (ce.Errno == unix.EOPNOTSUPP || ce.Errno == unix.EINVAL) {
				err = fmt.Errorf("%w: UBLK_U_CMD_GET_FEATURES (Linux 6.5+): %v", ErrUnsupported, err)
			}
			c.featErr = err
			return
		}
		c.features = *(*uint64)(unsafe.Pointer(&out[0]))
	})
	return c.features, c.featErr
}

// require checks that the kernel supports every flag in need.
func (c *Control) require(need uint64) error {
	have, err := c.Features()
	if err != nil {
		return err
	}
	return checkFeatures(have, need)
}

// checkFeatures returns an error wrapping ErrUnsupported that names every
// flag of need missing from have.
func checkFeatures(have, need uint64) error {
	if missing := need &^ have; missing != 0 {
		return fmt.Errorf("%w: %s (kernel offers %s)", ErrUnsupported, FeatureString(missing), FeatureString(have))
	}
	return nil
}

// FeatureNames returns the names of the UBLK_F_* bits set in f; unknown bits
// are named as hex numbers.
func FeatureNames(f uint64) []string {
	var names []string
	for _, fn := range featureNames {
		if f&fn.Bit != 0 {
			names = append(names, fn.Name)
			f &^= fn.Bit
		}
	}
	for bit := 0; bit < 64; bit++ {
		if f&(1<<bit) != 0 {
			names = append(names, fmt.Sprintf("UBLK_F_BIT_%d(0x%x)", bit, uint64(1)<<bit))
		}
	}
	return names
}

// FeatureString joins FeatureNames with "|".
func FeatureString(f uint64) string {
	s := ""
	for i, n := range FeatureNames(f) {
		if i > 0 {
			s += "|"
		}
		s += n
	}
	return s
}

// addDev issues ADD_DEV and returns the dev_info the kernel settled on.
func (c *Control) addDev(info DevInfo) (DevInfo, error) {
	out, err := c.command("ADD_DEV", uCmdAddDev, info.DevID, 0, asBytes(&info), int(unsafe.Sizeof(info)))
	if err != nil {
		return DevInfo{}, err
	}
	return *(*DevInfo)(unsafe.Pointer(&out[0])), nil
}

// DeviceInfo returns the kernel's dev_info of device id (GET_DEV_INFO).
func (c *Control) DeviceInfo(id int) (DevInfo, error) {
	var info DevInfo
	out, err := c.command("GET_DEV_INFO", uCmdGetDevInfo, uint32(id), 0, nil, int(unsafe.Sizeof(info)))
	if err != nil {
		return DevInfo{}, err
	}
	return *(*DevInfo)(unsafe.Pointer(&out[0])), nil
}

func (c *Control) setParams(id int, p params) error {
	p.Len = uint32(unsafe.Sizeof(p))
	_, err := c.command("SET_PARAMS", uCmdSetParams, uint32(id), 0, asBytes(&p), int(unsafe.Sizeof(p)))
	return err
}

func (c *Control) getParams(id int) (params, error) {
	p := params{Len: uint32(unsafe.Sizeof(params{}))}
	out, err := c.command("GET_PARAMS", uCmdGetParams, uint32(id), 0, asBytes(&p), int(unsafe.Sizeof(p)))
	if err != nil {
		return params{}, err
	}
	return *(*params)(unsafe.Pointer(&out[0])), nil
}

func (c *Control) startDev(id int, pid int) error {
	_, err := c.command("START_DEV", uCmdStartDev, uint32(id), uint64(pid), nil, 0)
	return err
}

func (c *Control) stopDev(id int) error {
	_, err := c.command("STOP_DEV", uCmdStopDev, uint32(id), 0, nil, 0)
	return err
}

// delDev deletes device id with DEL_DEV_ASYNC: the kernel removes the
// device at once and frees its number when the last opener of /dev/ublkbN
// (a mount, a VM) lets go, so a device in use cannot hang the caller. On
// kernels without it (before 6.9, or 6.9/6.10 whose driver misread the
// opcode) it falls back to DEL_DEV, which waits for the openers.
func (c *Control) delDev(id int) error {
	if !c.noAsyncDel.Load() {
		_, err := c.command("DEL_DEV_ASYNC", uCmdDelDevAsync, uint32(id), 0, nil, 0)
		var ce *CmdError
		if !errors.As(err, &ce) || (ce.Errno != unix.EOPNOTSUPP && ce.Errno != unix.EINVAL && ce.Errno != unix.ENOTTY) {
			return err
		}
		c.noAsyncDel.Store(true)
		c.log.Debug().Err(err).Msg("no DEL_DEV_ASYNC: deleting with DEL_DEV, which waits for the device's openers")
	}
	_, err := c.command("DEL_DEV", uCmdDelDev, uint32(id), 0, nil, 0)
	return err
}

func (c *Control) startUserRecovery(id int) error {
	_, err := c.command("START_USER_RECOVERY", uCmdStartUserRecovery, uint32(id), 0, nil, 0)
	return err
}

func (c *Control) endUserRecovery(id int, pid int) error {
	_, err := c.command("END_USER_RECOVERY", uCmdEndUserRecovery, uint32(id), uint64(pid), nil, 0)
	return err
}

// Delete stops device id (if live) and deletes it (see delDev: its number
// stays taken while /dev/ublkbN is held open). A server that still serves
// the device must stop first (its queues end when STOP_DEV aborts their
// commands). Use Device.Stop for a device served by this process.
func (c *Control) Delete(id int) error {
	if err := c.stopDev(id); err != nil {
		return err
	}
	return c.delDev(id)
}

// openCharDev opens /dev/ublkcN, retrying briefly while the node appears or
// while the previous owner's file is being released.
func openCharDev(id int, timeout time.Duration) (int, error) {
	path := fmt.Sprintf("/dev/ublkc%d", id)
	deadline := time.Now().Add(timeout)
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil {
			return fd, nil
		}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return -1, fmt.Errorf("%w (open %s: %v)", ErrPermission, path, err)
		}
		if (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EINTR)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if errors.Is(err, unix.EBUSY) {
			return -1, fmt.Errorf("%w: open %s: %v", ErrBusy, path, err)
		}
		return -1, fmt.Errorf("ublk: open %s: %w", path, err)
	}
}

// DeviceSize returns the size in bytes and the logical block size of
// device id, from its parameters (GET_PARAMS).
func (c *Control) DeviceSize(id int) (size int64, logicalBlockSize int, err error) {
	p, err := c.getParams(id)
	if err != nil {
		return 0, 0, err
	}
	return int64(p.Basic.DevSectors) << sectorShift, 1 << p.Basic.LogicalBSShift, nil
}
