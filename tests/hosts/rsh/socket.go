package main

import (
	"net"
	"time"
)

// Keepalive notices a dead peer on an idle connection (one waiting for
// data) in keepIdle + keepCount seconds. Data left unacknowledged on a
// dead link is the kernel's to time out (net.ipv4.tcp_retries2, which
// tests/hosts/netns lowers inside its namespaces). TCP_USER_TIMEOUT is not
// used: it also ends a connection whose live peer just stops reading for
// that long (a zero window), as a busy receiver may.
const (
	keepIdle  = 2 * time.Second
	keepCount = 3
)

var keepAlive = net.KeepAliveConfig{Enable: true, Idle: keepIdle, Interval: time.Second, Count: keepCount}

func dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: keepAlive}
}

func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAliveConfig: keepAlive}
}
