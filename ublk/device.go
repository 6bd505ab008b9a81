package ublk

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Device is one ublk device served by this process: /dev/ublkbN backed by
// a Backend. Create it with New (a new device) or Recover (taking over a
// device whose server died), then Start it and eventually Stop it.
//
// Start, Stop, Wait and the accessors are safe for concurrent use.
type Device struct {
	ctrl    *Control
	id      int
	info    DevInfo // as settled by the kernel
	size    int64
	lbs     int
	maxIO   int
	backend Backend
	log     zerolog.Logger
	recover bool // Start finishes with END_USER_RECOVERY instead of START_DEV

	mu       sync.Mutex // guards charFd, queues, started, stopped, queueErr
	charFd   int
	queues   []*queue
	started  bool
	stopped  bool
	queueErr error

	done chan struct{} // closed when every queue thread has ended
}

// New creates a ublk device (ADD_DEV + SET_PARAMS) and opens its character
// device. The device serves nothing until Start. On error nothing is left
// behind.
func New(ctrl *Control, cfg Config, b Backend) (*Device, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrInvalidConfig)
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	if err := ctrl.require(cfg.flags()); err != nil {
		return nil, err
	}
	devID := uint32(devIDAny)
	if cfg.ID >= 0 {
		devID = uint32(cfg.ID)
	}
	info, err := ctrl.addDev(DevInfo{
		NrHWQueues:    uint16(cfg.Queues),
		QueueDepth:    uint16(cfg.Depth),
		MaxIOBufBytes: uint32(cfg.MaxIOBytes),
		DevID:         devID,
		UblksrvPID:    int32(os.Getpid()),
		Flags:         cfg.flags(),
	})
	if err != nil {
		return nil, err
	}
	id := int(info.DevID)
	fail := func(err error) (*Device, error) {
		if derr := ctrl.delDev(id); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	if missing := cfg.flags() &^ info.Flags; missing != 0 {
		return fail(fmt.Errorf("%w: ADD_DEV dropped %s", ErrUnsupported, FeatureString(missing)))
	}
	if int(info.MaxIOBufBytes) < cfg.MaxIOBytes {
		cfg.MaxIOBytes = int(info.MaxIOBufBytes)
	}
	if err := ctrl.setParams(id, cfg.kernelParams()); err != nil {
		return fail(err)
	}
	fd, err := openCharDev(id, 5*time.Second)
	if err != nil {
		return fail(err)
	}
	d := &Device{
		ctrl: ctrl, id: id, info: info, size: cfg.Size, lbs: cfg.LogicalBlockSize,
		maxIO: int(info.MaxIOBufBytes), backend: b,
		log:    log.With().Int("ublk", id).Logger(),
		charFd: fd,
		done:   make(chan struct{}),
	}
	d.log.Info().Int("queues", int(info.NrHWQueues)).Int("depth", int(info.QueueDepth)).
		Int64("size", cfg.Size).Int("lbs", cfg.LogicalBlockSize).Str("flags", FeatureString(info.Flags)).
		Msg("ublk device added")
	return d, nil
}

// RecoverOptions tunes Recover.
type RecoverOptions struct {
	// Timeout bounds the wait for the dead server's resources to be
	// released (START_USER_RECOVERY answering EBUSY); default 30 s.
	Timeout time.Duration
	// Logger as in Config.
	Logger *zerolog.Logger
}

// Recover takes over device id whose serving process died: GET_DEV_INFO,
// START_USER_RECOVERY (retried while the kernel answers EBUSY), then opens
// /dev/ublkcN. Start then fetches every tag and sends END_USER_RECOVERY;
// /dev/ublkbN stays in place throughout and I/O that was in flight is
// reissued to the new server.
func Recover(ctrl *Control, id int, b Backend, opt RecoverOptions) (*Device, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil backend", ErrInvalidConfig)
	}
	log := zerolog.Nop()
	if opt.Logger != nil {
		log = *opt.Logger
	}
	if opt.Timeout == 0 {
		opt.Timeout = 30 * time.Second
	}
	info, err := ctrl.DeviceInfo(id)
	if err != nil {
		return nil, err
	}
	if info.Flags&FeatureUserRecovery == 0 {
		return nil, fmt.Errorf("%w: device %d was created without UBLK_F_USER_RECOVERY", ErrNotRecoverable, id)
	}
	p, err := ctrl.getParams(id)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(opt.Timeout)
	for {
		err = ctrl.startUserRecovery(id)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrBusy) {
			var ce *CmdError
			if errors.As(err, &ce) && ce.Errno == unix.EINVAL {
				return nil, fmt.Errorf("%w: %w", ErrNotRecoverable, err)
			}
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: device %d still busy after %v (is its server still running?): %w", ErrNotRecoverable, id, opt.Timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fd, err := openCharDev(id, 5*time.Second)
	if err != nil {
		return nil, err
	}
	d := &Device{
		ctrl: ctrl, id: id, info: info,
		size: int64(p.Basic.DevSectors) << sectorShift, lbs: 1 << p.Basic.LogicalBSShift,
		maxIO: int(info.MaxIOBufBytes), backend: b, recover: true,
		log:    log.With().Int("ublk", id).Logger(),
		charFd: fd,
		done:   make(chan struct{}),
	}
	d.log.Info().Int("queues", int(info.NrHWQueues)).Int("depth", int(info.QueueDepth)).Msg("ublk device recovery started")
	return d, nil
}

// ID returns the device number N.
func (d *Device) ID() int { return d.id }

// BlockPath returns "/dev/ublkbN".
func (d *Device) BlockPath() string { return fmt.Sprintf("/dev/ublkb%d", d.id) }

// CharPath returns "/dev/ublkcN".
func (d *Device) CharPath() string { return fmt.Sprintf("/dev/ublkc%d", d.id) }

// Info returns the dev_info the kernel settled on (queue count, depth,
// buffer size and negotiated UBLK_F_* flags).
func (d *Device) Info() DevInfo { return d.info }

// Size returns the device size in bytes.
func (d *Device) Size() int64 { return d.size }

// LogicalBlockSize returns the logical block size in bytes.
func (d *Device) LogicalBlockSize() int { return d.lbs }

// Start starts one queue thread per hardware queue, waits until each has
// fetched every tag and then makes the device live (START_DEV, or
// END_USER_RECOVERY for a recovered device), from the calling goroutine.
// It returns once /dev/ublkbN serves I/O. If Start fails the device is
// stopped and deleted (a recovered device is left for another attempt).
func (d *Device) Start() error {
	d.mu.Lock()
	if d.started || d.stopped {
		d.mu.Unlock()
		return fmt.Errorf("ublk: device %d: Start called twice or after Stop", d.id)
	}
	d.started = true
	n := int(d.info.NrHWQueues)
	readies := make([]chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		q := newQueue(i, int(d.info.QueueDepth), d.maxIO, d.size, d.charFd, d.info.Flags&FeatureUserCopy != 0, d.backend, d.log)
		d.queues = append(d.queues, q)
		readies[i] = make(chan error, 1)
		wg.Add(1)
		go func(q *queue, ready chan<- error) {
			defer wg.Done()
			if err := q.run(ready); err != nil {
				d.mu.Lock()
				if d.queueErr == nil {
					d.queueErr = err
				}
				d.mu.Unlock()
			}
		}(q, readies[i])
	}
	d.mu.Unlock()
	go func() {
		wg.Wait()
		close(d.done)
	}()

	var err error
	for _, r := range readies {
		if e := <-r; e != nil && err == nil {
			err = e
		}
	}
	if err == nil {
		if d.recover {
			err = d.ctrl.endUserRecovery(d.id, os.Getpid())
		} else {
			err = d.ctrl.startDev(d.id, os.Getpid())
		}
	}
	if err != nil {
		if d.recover {
			_ = d.Abandon()
		} else if serr := d.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return err
	}
	d.log.Info().Str("path", d.BlockPath()).Msg("ublk device live")
	return nil
}

// Abandon stops serving the device from this process without stopping
// the device: the queue threads leave at once (requests in flight are not
// committed), their rings and /dev/ublkcN are closed. With user recovery
// (the default) the kernel quiesces the device, keeps /dev/ublkbN and
// requeues the uncommitted requests; Recover, from this process or another
// one, then takes the device over. Use it for a hand-over to a new server
// process; Stop is the way to remove a device.
func (d *Device) Abandon() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	started := d.started
	queues := d.queues
	d.mu.Unlock()
	for _, q := range queues {
		q.requestQuit()
	}
	if started {
		<-d.done
	}
	d.mu.Lock()
	fd := d.charFd
	d.charFd = -1
	d.mu.Unlock()
	if fd >= 0 {
		if err := unix.Close(fd); err != nil {
			return fmt.Errorf("ublk: close %s: %w", d.CharPath(), err)
		}
	}
	d.log.Info().Msg("ublk device abandoned")
	return nil
}

// Done is closed when every queue thread has ended: after Stop, after
// another process stopped the device, or after a fatal queue error.
func (d *Device) Done() <-chan struct{} { return d.done }

// Wait blocks until Done and returns the first queue error, if any.
func (d *Device) Wait() error {
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queueErr
}

// Stop tears the device down: STOP_DEV (the kernel drains requests in
// flight, which the queues keep serving, then aborts every tag's command),
// waits for the queue threads to end, closes /dev/ublkcN and deletes the
// device (DEL_DEV). It is idempotent; later calls return nil.
func (d *Device) Stop() error {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	started := d.started
	d.mu.Unlock()

	var errs []error
	if err := d.ctrl.stopDev(d.id); err != nil {
		// The kernel will not abort the tags: make the queues leave on
		// their own so that Stop cannot hang on them.
		d.mu.Lock()
		for _, q := range d.queues {
			q.requestQuit()
		}
		d.mu.Unlock()
		if !errors.Is(err, ErrNoDevice) {
			errs = append(errs, err)
		}
	}
	if started {
		<-d.done
	}
	d.mu.Lock()
	fd := d.charFd
	d.charFd = -1
	qerr := d.queueErr
	d.mu.Unlock()
	if qerr != nil {
		errs = append(errs, qerr)
	}
	if fd >= 0 {
		if err := unix.Close(fd); err != nil {
			errs = append(errs, fmt.Errorf("ublk: close %s: %w", d.CharPath(), err))
		}
	}
	if err := d.ctrl.delDev(d.id); err != nil && !errors.Is(err, ErrNoDevice) {
		errs = append(errs, err)
	}
	d.log.Info().Msg("ublk device deleted")
	return errors.Join(errs...)
}
