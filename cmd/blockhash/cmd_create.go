package main

import (
	"errors"
	"fmt"

	"blockhash/daemon"
	"blockhash/engine"
)

func init() {
	register(&command{name: "create", usage: "NAME --size SIZE", summary: "create a device in the store", run: runCreate})
}

func runCreate(e *env, args []string) error {
	fs := newFlags("create")
	var size sizeFlag
	fs.Var(&size, "size", "device size, like 20G or 512M")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if !size.set {
		return usagef("--size is required")
	}
	var created int64
	resp, err := e.viaDaemonOr(daemon.Request{Op: "create", Name: pos[0], Size: size.v, ID: -1}, noBackground,
		func(eng *engine.Engine) error {
			d, err := eng.CreateDevice(pos[0], size.v)
			if err == nil {
				created = d.Size()
			}
			return err
		})
	if err != nil {
		return err
	}
	if resp.Size != 0 {
		created = resp.Size
	}
	fmt.Fprintf(e.stdout, "created %s (%s)\n", pos[0], human(created))
	return nil
}

// deleteDevice opens the store as a command that frees space and deletes
// the device name if it exists.
func (e *env) deleteDevice(name string) error {
	eng, err := e.openStore(freeing)
	if err != nil {
		return err
	}
	err = eng.DeleteDevice(name)
	if errors.Is(err, engine.ErrNotFound) {
		err = nil
	}
	return errors.Join(err, eng.Close())
}
