package main

import (
	"fmt"
	"net"
	"os"
)

// notifier tells a service manager how the daemon is doing, with the
// sd_notify protocol: one datagram of "KEY=VALUE" lines to the unix socket
// named by NOTIFY_SOCKET (a name beginning with '@' is in the abstract
// namespace). Without NOTIFY_SOCKET it does nothing, so serve behaves the
// same outside systemd.
type notifier struct {
	addr string
}

func newNotifier() notifier { return notifier{addr: os.Getenv("NOTIFY_SOCKET")} }

// send sends state (e.g. "READY=1\nSTATUS=serving 2 devices"); an error
// is returned for the caller to log, never to act on.
func (n notifier) send(state string) error {
	if n.addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
