package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serve --metrics-addr with an address it cannot listen on is a one-line
// error naming it, exit status 1, and leaves no control socket behind.
func TestServeBadMetricsAddr(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "1M")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, addr := range []string{"not-an-address", busy.Addr().String()} {
		sock := filepath.Join(dir, "s.sock")
		r := runArgs("--store", store, "serve", "--socket", sock, "--no-devices", "--metrics-addr", addr)
		if r.code != 1 || !strings.Contains(r.stderr, "blockhash serve: ") || !strings.Contains(r.stderr, addr) ||
			strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("--metrics-addr %s: %+v", addr, r)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("--metrics-addr %s left the control socket", addr)
		}
	}
}
