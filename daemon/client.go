package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"time"
)

// RemoteError is an error the daemon answered with.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }

// Client talks to a daemon.
type Client struct {
	Socket  string
	Timeout time.Duration // for the whole request; default 5 minutes
}

// Running reports whether a daemon answers on the socket.
func (c Client) Running() bool {
	_, err := c.Do(Request{Op: "ping"})
	return err == nil
}

// dial connects to the daemon's socket.
func (c Client) dial() (net.Conn, error) {
	path := c.Socket
	if path == "" {
		path = DefaultSocket
	}
	conn, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, ErrNotRunning
		}
		if errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("daemon: %s: permission denied: the blockhash daemon answers root only", path)
		}
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return conn, nil
}

// Do sends one request and returns the daemon's answer.
func (c Client) Do(r Request) (Response, error) {
	conn, err := c.dial()
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	conn.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(conn).Encode(r); err != nil {
		return Response{}, fmt.Errorf("daemon: send: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("daemon: receive: %w", err)
	}
	if resp.Error != "" {
		return resp, &RemoteError{Msg: resp.Error}
	}
	return resp, nil
}

// Pause holds the I/O of served device name (requests wait, none fails)
// and returns once the requests already in the store have finished and
// the store is flushed: the device's content is final until Resume, or
// until del releases it (the held requests then fail with EIO).
func (c Client) Pause(name string) error {
	_, err := c.Do(Request{Op: "pause", Name: name, ID: -1})
	return err
}

// Resume lets the held I/O of device name go on (a device not paused is
// left as it is).
func (c Client) Resume(name string) error {
	_, err := c.Do(Request{Op: "resume", Name: name, ID: -1})
	return err
}

// Invalidate drops the kernel's cached pages of served device name, after
// its content was replaced underneath it.
func (c Client) Invalidate(name string) error {
	_, err := c.Do(Request{Op: "invalidate", Name: name, ID: -1})
	return err
}

// Stream sends a request whose answer is followed by a stream (send,
// receive) and returns the connection positioned at the stream's start.
func (c Client) Stream(r Request) (*net.UnixConn, error) {
	uc, _, err := c.StreamAnswer(r)
	return uc, err
}

// StreamAnswer is Stream that returns the daemon's first answer too
// (export: the stream's length).
func (c Client) StreamAnswer(r Request) (*net.UnixConn, Response, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, Response{}, err
	}
	uc := conn.(*net.UnixConn)
	if err := json.NewEncoder(uc).Encode(r); err != nil {
		uc.Close()
		return nil, Response{}, fmt.Errorf("daemon: send: %w", err)
	}
	// The answer is one line; read it a byte at a time so that nothing of
	// the stream behind it is consumed.
	var line []byte
	var b [1]byte
	for {
		if _, err := uc.Read(b[:]); err != nil {
			uc.Close()
			return nil, Response{}, fmt.Errorf("daemon: receive: %w", err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
		if len(line) > 1<<16 {
			uc.Close()
			return nil, Response{}, fmt.Errorf("daemon: answer too long")
		}
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		uc.Close()
		return nil, Response{}, fmt.Errorf("daemon: receive: %w", err)
	}
	if resp.Error != "" {
		uc.Close()
		return nil, resp, &RemoteError{Msg: resp.Error}
	}
	return uc, resp, nil
}
