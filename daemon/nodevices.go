package daemon

import (
	"fmt"

	"blockhash/ublk"
)

// NoDevices is the Exporter of a daemon that serves its store but no
// block devices (`serve --no-devices`): a host that holds replicas, takes
// snapshots and answers stats, on a kernel without ublk_drv. Adding a
// device fails with ErrNoDevices; devices its state file lists stay
// listed as stopped.
type NoDevices struct{}

func (NoDevices) Export(cfg ublk.Config, b ublk.Backend) (Export, error) {
	return nil, fmt.Errorf("%w (the daemon was started with --no-devices)", ErrNoDevices)
}

func (NoDevices) Recover(id int, b ublk.Backend) (Export, error) {
	return nil, fmt.Errorf("%w (the daemon was started with --no-devices)", ErrNoDevices)
}

func (NoDevices) Lookup(id int) (KernelDevice, error) { return KernelDevice{}, ublk.ErrNoDevice }
func (NoDevices) Delete(id int) error                 { return ublk.ErrNoDevice }
func (NoDevices) Close() error                        { return nil }
