package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxLine bounds the command line a client may send.
const maxLine = 64 << 10

// defaultGrace is how long a command may run on after its client went away
// before its process group is killed.
const defaultGrace = 5 * time.Second

// server runs one command per connection. Its fields are set before serve
// and only read after.
type server struct {
	log   *log.Logger
	grace time.Duration // see defaultGrace
}

// serve accepts connections until ln fails (or is closed).
func (s *server) serve(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go s.handle(c)
	}
}

func (s *server) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 64<<10)
	line, err := readLine(br)
	if err != nil {
		s.log.Printf("%s: %v", c.RemoteAddr(), err)
		return
	}
	fw := &frameWriter{w: c}
	status, lost, fed := s.run(line, br, fw)
	s.log.Printf("%s: %q exit %d", c.RemoteAddr(), line, status)
	if lost {
		return
	}
	if err := fw.exit(status); err != nil {
		return
	}
	// Half-close, then let the stdin feeder drain until the client closes
	// after reading the exit frame: closing with its stdin still unread
	// would reset the connection and could drop the exit frame.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	<-fed
}

// readLine reads the command line, refusing an empty or oversized one.
func readLine(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		frag, err := br.ReadSlice('\n')
		b.Write(frag)
		if b.Len() > maxLine {
			return "", fmt.Errorf("command line longer than %d bytes", maxLine)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("reading the command line: %w", err)
		}
	}
	line := strings.TrimSuffix(b.String(), "\n")
	if strings.TrimSpace(line) == "" {
		return "", errors.New("empty command line")
	}
	return line, nil
}

// run runs line with sh -c, feeding it stdin from the connection and its
// output to fw. It returns the exit status (128+N for signal N, 127 when it
// could not start), whether the connection was lost meanwhile, and a channel
// closed when the stdin feeder has stopped reading the connection.
func (s *server) run(line string, stdin io.Reader, fw *frameWriter) (status int, lost bool, fed chan struct{}) {
	fed = make(chan struct{})
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	inW, err1 := cmd.StdinPipe()
	outR, err2 := cmd.StdoutPipe()
	errR, err3 := cmd.StderrPipe()
	err := errors.Join(err1, err2, err3)
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		close(fed)
		_ = fw.write(frameStderr, []byte("rsh: "+err.Error()+"\n"))
		return 127, false, fed
	}

	var (
		mu     sync.Mutex // guards exited and the kill after a lost connection
		exited bool
	)
	var lostOnce sync.Once
	lostCh := make(chan struct{})
	// onLost closes the command's pipes, as sshd does when its client goes
	// away, and kills the process group after a grace period.
	onLost := func() {
		lostOnce.Do(func() {
			close(lostCh)
			_ = inW.Close()
			_ = outR.Close()
			_ = errR.Close()
			time.AfterFunc(s.grace, func() {
				mu.Lock()
				defer mu.Unlock()
				if !exited {
					_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				}
			})
		})
	}

	// stdin: copy until the client half-closes (the command sees EOF) or
	// the connection fails; once the command stops reading, drain.
	go func() {
		defer close(fed)
		_, err := io.Copy(inW, stdin)
		_ = inW.Close()
		if err != nil && isPipeErr(err) {
			_, err = io.Copy(io.Discard, stdin)
		}
		if err != nil {
			onLost()
		}
	}()

	var wg sync.WaitGroup
	for _, p := range []struct {
		r    io.Reader
		kind byte
	}{{outR, frameStdout}, {errR, frameStderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A read error means onLost closed the pipe; a write error
			// means the connection failed.
			if _, err := io.CopyBuffer(streamWriter{fw, p.kind}, p.r, make([]byte, 32<<10)); err != nil {
				onLost()
			}
		}()
	}
	wg.Wait()
	werr := cmd.Wait()
	mu.Lock()
	exited = true
	mu.Unlock()
	select {
	case <-lostCh:
		lost = true
	default:
	}
	return exitStatus(werr), lost, fed
}

// isPipeErr tells a write to a command that stopped reading (or a read of a
// pipe already closed) from a connection failure.
func isPipeErr(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed)
}

// exitStatus turns Wait's result into a shell-style status.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 255
}

// listen opens the server's listener with the keepalive settings.
func listen(addr string) (net.Listener, error) {
	return listenConfig().Listen(context.Background(), "tcp", addr)
}
