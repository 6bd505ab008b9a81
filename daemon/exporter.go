package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"blockhash/ublk"
)

// Export is one served kernel device.
type Export interface {
	ID() int
	BlockPath() string
	// Stop drains in-flight I/O and removes the kernel device.
	Stop() error
	// Abandon stops serving from this process but leaves the kernel
	// device in place for the next server (user recovery): every backend
	// call in flight returns first; requests whose completion was not
	// committed to the kernel are requeued by it to the next server.
	Abandon() error
	// Done is closed when the device stops serving, for whatever reason.
	Done() <-chan struct{}
}

// Exporter creates kernel devices that serve a backend.
type Exporter interface {
	// Export creates and starts device cfg.ID (-1: any free id).
	Export(cfg ublk.Config, b ublk.Backend) (Export, error)
	// Recover takes over device id left by a server that died.
	Recover(id int, b ublk.Backend) (Export, error)
	// Lookup describes kernel device id; ublk.ErrNoDevice if there is none.
	Lookup(id int) (KernelDevice, error)
	// Delete removes kernel device id (no server attached).
	Delete(id int) error
	Close() error
}

// KernelDevice is what the kernel reports of one ublk device, whoever
// serves it.
type KernelDevice struct {
	ID    int
	State int // ublk.StateDead, ublk.StateLive or ublk.StateQuiesced
	// ServerPID is the process that started (or last recovered) the
	// device; ServerAlive tells whether that process still runs and is
	// not this one.
	ServerPID   int
	ServerAlive bool
	Size        int64
	LBS         int
}

// KernelExporter serves devices through /dev/ublk-control.
type KernelExporter struct {
	ctrl *ublk.Control
	log  zerolog.Logger
}

// NewKernelExporter opens the ublk control device.
func NewKernelExporter(log zerolog.Logger) (*KernelExporter, error) {
	ctrl, err := ublk.OpenControlLogger(log)
	if err != nil {
		return nil, err
	}
	return &KernelExporter{ctrl: ctrl, log: log}, nil
}

// Export implements Exporter.
func (k *KernelExporter) Export(cfg ublk.Config, b ublk.Backend) (Export, error) {
	cfg.Logger = &k.log
	d, err := ublk.New(k.ctrl, cfg, b)
	if err != nil {
		return nil, err
	}
	if err := d.Start(); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Recover implements Exporter.
func (k *KernelExporter) Recover(id int, b ublk.Backend) (Export, error) {
	d, err := ublk.Recover(k.ctrl, id, b, ublk.RecoverOptions{Logger: &k.log})
	if err != nil {
		return nil, err
	}
	if err := d.Start(); err != nil {
		return nil, fmt.Errorf("recover ublk device %d: %w", id, err)
	}
	return d, nil
}

// serverExitWait is how long Lookup waits for a device's previous server
// to finish exiting (a daemon restarted by systemd may still be on its
// way out when the new one looks) before calling it alive.
const serverExitWait = 3 * time.Second

// Lookup implements Exporter.
func (k *KernelExporter) Lookup(id int) (KernelDevice, error) {
	info, err := k.ctrl.DeviceInfo(id)
	if err != nil {
		return KernelDevice{}, err
	}
	kd := KernelDevice{ID: id, State: int(info.State), ServerPID: int(info.UblksrvPID)}
	if kd.Size, kd.LBS, err = k.ctrl.DeviceSize(id); err != nil {
		return KernelDevice{}, err
	}
	if kd.ServerPID > 0 && kd.ServerPID != os.Getpid() {
		deadline := time.Now().Add(serverExitWait)
		for kd.ServerAlive = processAlive(kd.ServerPID); kd.ServerAlive && time.Now().Before(deadline); kd.ServerAlive = processAlive(kd.ServerPID) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return kd, nil
}

// processAlive tells whether process pid runs. A zombie (dead, not yet
// reaped by its parent) does not count.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		// no /proc: ask the process itself
		p, _ := os.FindProcess(pid)
		err := p.Signal(syscall.Signal(0))
		return err == nil || errors.Is(err, syscall.EPERM)
	}
	// "pid (comm) S ...": the state follows the last ')'
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		switch s[i+2] {
		case 'Z', 'X', 'x':
			return false
		}
	}
	return true
}

// Delete implements Exporter.
func (k *KernelExporter) Delete(id int) error { return k.ctrl.Delete(id) }

// Close implements Exporter.
func (k *KernelExporter) Close() error { return k.ctrl.Close() }
