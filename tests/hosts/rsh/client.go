package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
)

// defaultPort is used when HOST carries none.
const defaultPort = "2222"

// statusConnFailed is the client's status when the connection failed before
// the exit frame, as ssh's 255.
const statusConnFailed = 255

// errNoExit is returned when the stream ends without an exit frame.
var errNoExit = errors.New("connection closed before the command's exit status")

// client runs one command on a server.
type client struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// hostPort adds the default port to a bare host.
func hostPort(host string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(host, defaultPort)
}

// run sends the command line and bridges the streams; it returns the
// command's exit status, or statusConnFailed and the error.
func (c *client) run(host string, args []string) (int, error) {
	line := strings.Join(args, " ")
	if strings.ContainsAny(line, "\n\x00") {
		return statusConnFailed, errors.New("the command line holds a newline or NUL byte")
	}
	conn, err := dialer().DialContext(context.Background(), "tcp", hostPort(host))
	if err != nil {
		return statusConnFailed, err
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return statusConnFailed, err
	}
	// stdin: copy, then half-close so the command sees EOF. Nobody waits
	// for this goroutine: once the exit frame arrives the client is done.
	go func() {
		if c.stdin != nil {
			_, _ = io.Copy(conn, c.stdin)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	buf := make([]byte, maxFrame)
	for {
		kind, p, err := readFrame(conn, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errNoExit
			}
			return statusConnFailed, err
		}
		switch kind {
		case frameStdout:
			if _, err := c.stdout.Write(p); err != nil {
				return statusConnFailed, fmt.Errorf("writing stdout: %w", err)
			}
		case frameStderr:
			_, _ = c.stderr.Write(p)
		case frameExit:
			return int(int32(binary.BigEndian.Uint32(p))), nil
		}
	}
}
