//go:build !rados

package main

import (
	"blockhash/daemon"
	"blockhash/tools/bench"
)

func offlinePool(rf *radosFlags, r daemon.Request) (daemon.Response, error) {
	return daemon.Response{}, errNoRados
}

func poolInit(e *env, rf *radosFlags, shards uint) error { return errNoRados }

func poolServe(e *env, rf *radosFlags, o poolServeOptions) error { return errNoRados }

func benchPool(e *env, rf *radosFlags, o bench.Options, asJSON bool) error { return errNoRados }
