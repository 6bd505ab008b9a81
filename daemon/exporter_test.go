package daemon

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// processAlive (whether a kernel device's server still runs) counts a
// running process, not one that exited, reaped or not (a zombie).
func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	pid := cmd.Process.Pid
	if !processAlive(pid) {
		t.Fatal("a running child is not alive")
	}
	cmd.Process.Kill()
	// not reaped yet: a zombie
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if processAlive(pid) {
		t.Fatal("a killed, unreaped child (zombie) counts as alive")
	}
	cmd.Wait()
	if processAlive(pid) {
		t.Fatal("a reaped child counts as alive")
	}
}
