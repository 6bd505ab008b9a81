package main

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// How soon a dead peer is noticed: keepalive probes an idle connection,
// TCP_USER_TIMEOUT bounds how long sent data may stay unacknowledged.
const (
	keepIdle    = 2 * time.Second
	keepCount   = 3
	userTimeout = 6 * time.Second
)

var keepAlive = net.KeepAliveConfig{Enable: true, Idle: keepIdle, Interval: time.Second, Count: keepCount}

// setUserTimeout sets TCP_USER_TIMEOUT on a socket before it connects or
// listens (accepted sockets inherit it).
func setUserTimeout(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout/time.Millisecond))
	})
	if err != nil {
		return err
	}
	return serr
}

func dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: keepAlive, Control: setUserTimeout}
}

func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{KeepAliveConfig: keepAlive, Control: setUserTimeout}
}
