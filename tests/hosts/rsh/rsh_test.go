package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startServer serves on a loopback port until the test ends.
func startServer(t *testing.T) string {
	t.Helper()
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &server{log: log.New(io.Discard, "", 0), grace: 500 * time.Millisecond}
	go func() { _ = s.serve(ln) }()
	return ln.Addr().String()
}

// runCmd runs args on addr with stdin and returns status, stdout, stderr.
func runCmd(t *testing.T, addr string, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &client{stdin: stdin, stdout: &out, stderr: &errb}
	status, err := c.run(addr, args)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	return status, out.String(), errb.String()
}

func TestExitStatus(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	for _, tc := range []struct {
		cmd  string
		want int
	}{
		{"true", 0},
		{"false", 1},
		{"exit 7", 7},
		{"kill -9 $$", 128 + 9},
		{"kill -TERM $$", 128 + 15},
		{"no-such-command-rsh-test", 127},
	} {
		status, _, _ := runCmd(t, addr, strings.NewReader(""), tc.cmd)
		if status != tc.want {
			t.Errorf("%q: status %d, want %d", tc.cmd, status, tc.want)
		}
	}
}

func TestStreams(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	for _, tc := range []struct {
		name           string
		args           []string
		stdin          string
		stdout, stderr string
	}{
		{"args joined like ssh", []string{"echo", "a", "'b  c'"}, "", "a b  c\n", ""},
		{"stderr apart", []string{"echo out; echo err >&2"}, "", "out\n", "err\n"},
		{"stdin reaches EOF", []string{"wc", "-c"}, strings.Repeat("x", 12345), "12345\n", ""},
		{"empty stdin is EOF at once", []string{"cat"}, "", "", ""},
		{"output after EOF", []string{"cat >/dev/null; echo after"}, "abc", "after\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out, errs := runCmd(t, addr, strings.NewReader(tc.stdin), tc.args...)
			if status != 0 || out != tc.stdout || errs != tc.stderr {
				t.Errorf("status %d stdout %q stderr %q, want 0 %q %q", status, out, errs, tc.stdout, tc.stderr)
			}
		})
	}
}

// A command that stops reading its stdin early must not hang the client.
func TestCommandStopsReading(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	status, out, _ := runCmd(t, addr, io.LimitReader(rand.Reader, 64<<20), "head -c 10 >/dev/null; echo done")
	if status != 0 || out != "done\n" {
		t.Fatalf("status %d stdout %q", status, out)
	}
}

// Large streams both ways at once: cat echoes 48 MiB while the client is
// still sending, and a stderr stream runs beside it.
func TestLargeBidirectional(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	data := make([]byte, 48<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	status, out, errs := runCmd(t, addr, bytes.NewReader(data), "cat; head -c 3000000 /dev/zero | tr '\\0' e >&2")
	if status != 0 {
		t.Fatalf("status %d", status)
	}
	if out != string(data) {
		t.Fatalf("stdout differs: %d bytes, want %d", len(out), len(data))
	}
	if errs != strings.Repeat("e", 3000000) {
		t.Fatalf("stderr: %d bytes", len(errs))
	}
}

// A client that goes away while the command writes: the command's stdout
// closes (it gets SIGPIPE) and the server goes on serving.
func TestClientGoneClosesPipes(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	mark := filepath.Join(t.TempDir(), "mark")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, "cat /dev/zero; echo gone > "+mark+"\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitFor(t, func() bool { _, err := os.Stat(mark); return err == nil })
	if status, out, _ := runCmd(t, addr, nil, "echo", "still"); status != 0 || out != "still\n" {
		t.Fatalf("after a lost client: status %d stdout %q", status, out)
	}
}

// A command that survives the closing of its pipes is killed after the
// grace period, with its whole process group.
func TestClientGoneKillsStubbornCommand(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	line := "trap '' PIPE; sleep 600 & echo $! > " + pidFile + "; while :; do echo x || sleep 0.01; done\n"
	if _, err := io.WriteString(conn, line); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	var pid int
	waitFor(t, func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	// The background sleep is in the command's process group: it goes too.
	waitFor(t, func() bool { return syscall.Kill(pid, 0) != nil })
}

// A server that closes without an exit frame is a failure (255), not 0.
func TestNoExitFrame(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			fw := &frameWriter{w: c}
			_ = fw.write(frameStdout, []byte("partial"))
			c.Close()
		}
	}()
	var out bytes.Buffer
	c := &client{stdin: strings.NewReader(""), stdout: &out, stderr: io.Discard}
	status, err := c.run(ln.Addr().String(), []string{"x"})
	if status != statusConnFailed || err == nil {
		t.Fatalf("status %d err %v, want %d and an error", status, err, statusConnFailed)
	}
}

func TestHostPort(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"10.0.0.1":      "10.0.0.1:" + defaultPort,
		"10.0.0.1:99":   "10.0.0.1:99",
		"hostb":         "hostb:" + defaultPort,
		"[::1]:7":       "[::1]:7",
		"198.19.10.2:1": "198.19.10.2:1",
	} {
		if got := hostPort(in); got != want {
			t.Errorf("hostPort(%q) = %q, want %q", in, got, want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A command that pauses reading while the client has more to send is not
// a dead peer: the connection must last (TCP_USER_TIMEOUT of 6 s ended it).
func TestSlowReaderKeepsConnection(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	status, out, _ := runCmd(t, addr, io.LimitReader(zeroReader{}, 64<<20), "sleep 7; wc -c")
	if status != 0 || strings.TrimSpace(out) != strconv.Itoa(64<<20) {
		t.Fatalf("status %d stdout %q", status, out)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
