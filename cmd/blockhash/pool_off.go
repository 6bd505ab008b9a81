//go:build !rados

package main

import "blockhash/daemon"

func offlinePool(rf *radosFlags, r daemon.Request) (daemon.Response, error) {
	return daemon.Response{}, errNoRados
}

func poolInit(e *env, rf *radosFlags, shards uint) error { return errNoRados }

func poolServe(e *env, rf *radosFlags, o poolServeOptions) error { return errNoRados }
