package main

import (
	"net"
	"path/filepath"
	"testing"
	"time"
)

// The notifier sends its state as one datagram to NOTIFY_SOCKET (a path,
// or an abstract name), and does nothing without it.
func TestNotifier(t *testing.T) {
	for _, tc := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", "@blockhash-test-notify-" + t.Name()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tc.addr, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			t.Setenv("NOTIFY_SOCKET", tc.addr)
			if err := newNotifier().send("READY=1\nSTATUS=serving 2 devices"); err != nil {
				t.Fatal(err)
			}
			l.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 256)
			n, err := l.Read(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b[:n]); got != "READY=1\nSTATUS=serving 2 devices" {
				t.Fatalf("got %q", got)
			}
		})
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := newNotifier().send("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %v", err)
	}
}

// init --if-missing leaves an existing store alone and exits 0 (a
// service's ExecStartPre); without it, a second init is refused.
func TestInitIfMissing(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s")
	mustCLI(t, store, "init", "--if-missing")
	mustCLI(t, store, "init", "--if-missing")
	if r := cli(t, store, "init"); r.code == 0 {
		t.Fatal("a second init without --if-missing succeeded")
	}
}
