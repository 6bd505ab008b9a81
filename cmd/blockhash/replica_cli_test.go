package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets a test run this binary as blockhash itself
// (BLOCKHASH_TEST_MAIN=1), for what only a separate process shows.
func TestMain(m *testing.M) {
	if os.Getenv("BLOCKHASH_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestReceiveOutputGone: a receive whose answers can no longer be
// written (the link dropped, the sender died) ends with an error of its
// own, having kept what it stored, instead of dying of SIGPIPE
// (regression: it was killed by the signal).
func TestReceiveOutputGone(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s")
	mustCLI(t, store, "init")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // nobody reads the receive's answers
	defer w.Close()
	cmd := exec.Command(os.Args[0], "--store", store, "--socket", filepath.Join(t.TempDir(), "none.sock"), "receive", "vm")
	cmd.Env = append(os.Environ(), "BLOCKHASH_TEST_MAIN=1")
	cmd.Stdin = strings.NewReader("not a replication stream at all")
	cmd.Stdout = w
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("receive of garbage: %v, want a failure", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("receive died of %v; stderr %q", ws.Signal(), stderr.String())
	}
	if ee.ExitCode() != 1 || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q: want 1 and one line", ee.ExitCode(), stderr.String())
	}
}
