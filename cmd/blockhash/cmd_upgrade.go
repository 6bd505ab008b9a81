package main

import (
	"fmt"

	"blockhash/engine"
)

func init() {
	register(&command{name: "upgrade", usage: "", summary: "convert a store made by an older blockhash (format 1) to this one's format, in place", run: runUpgrade})
}

func runUpgrade(e *env, args []string) error {
	if _, err := parseArgs(newFlags("upgrade"), args, 0); err != nil {
		return err
	}
	if err := engine.Upgrade(e.store, engine.Options{Logger: e.log}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "upgraded %s to format %d\n", e.store, engine.FormatVersion)
	return nil
}
