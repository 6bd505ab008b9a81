package daemon

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"blockhash/ublk"
)

// Export is one served kernel device.
type Export interface {
	ID() int
	BlockPath() string
	// Stop drains in-flight I/O and removes the kernel device.
	Stop() error
	// Done is closed when the device stops serving, for whatever reason.
	Done() <-chan struct{}
}

// Exporter creates kernel devices that serve a backend.
type Exporter interface {
	// Export creates and starts device cfg.ID (-1: any free id).
	Export(cfg ublk.Config, b ublk.Backend) (Export, error)
	// Recover takes over device id left by a server that died.
	Recover(id int, b ublk.Backend) (Export, error)
	// Exists reports whether kernel device id exists.
	Exists(id int) bool
	// Delete removes kernel device id (no server attached).
	Delete(id int) error
	Close() error
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

// Exists implements Exporter.
func (k *KernelExporter) Exists(id int) bool {
	_, err := k.ctrl.DeviceInfo(id)
	return err == nil || !errors.Is(err, ublk.ErrNoDevice)
}

// Delete implements Exporter.
func (k *KernelExporter) Delete(id int) error { return k.ctrl.Delete(id) }

// Close implements Exporter.
func (k *KernelExporter) Close() error { return k.ctrl.Close() }
