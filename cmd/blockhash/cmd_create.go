package main

import (
	"errors"
	"flag"
	"fmt"

	"blockhash/daemon"
	"blockhash/engine"
)

func init() {
	register(&command{name: "create", usage: "NAME --size SIZE [--domain NAME]", summary: "create a device in the store", run: runCreate})
}

func runCreate(e *env, args []string) error {
	fs := newFlags("create")
	var size sizeFlag
	fs.Var(&size, "size", "device size, like 20G or 512M")
	domain := domainFlag(fs)
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return err
	}
	if !size.set {
		return usagef("--size is required")
	}
	var created int64
	resp, err := e.viaDaemonOr(daemon.Request{Op: "create", Name: pos[0], Size: size.v, ID: -1, Domain: *domain}, noBackground,
		func(eng *engine.Engine) error {
			d, err := eng.CreateDevice(pos[0], size.v, engine.CreateOptions{Domain: *domain})
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

// domainFlag adds --domain: the dedup domain of a device the command
// makes (an existing device must be in it).
func domainFlag(fs *flag.FlagSet) *string {
	return fs.String("domain", "", "dedup `DOMAIN` of a new device: it shares blocks only with the devices of its domain (made on first use; \"default\": the store's default domain). An existing device must be in it")
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
