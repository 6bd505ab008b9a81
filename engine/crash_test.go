package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test runs this package's test binary as a child that writes and
// flushes in a loop, logging each operation before it issues it and "F"
// after each Flush returns. The parent kills it with SIGKILL at a random
// moment, reopens the store and checks that the device equals the model
// after some operation at or after the last acknowledged flush (a commit
// holds whole requests, in order), and that fsck finds nothing wrong.

const (
	crashDevSize = 512 << 10
	crashEnvDir  = "BLOCKHASH_CRASH_DIR"
	crashEnvSeed = "BLOCKHASH_CRASH_SEED"
)

type crashOp struct {
	kind   byte // 'W' write, 'D' discard, 'F' flushed
	off, n int64
	seed   uint64
}

// crashData is the content of a logged write, derived from its seed: a mix
// of a few recurring blocks (duplicates) and unique ones.
func crashData(op crashOp) []byte {
	p := make([]byte, op.n)
	r := rand.New(rand.NewPCG(op.seed, 77))
	for i := int64(0); i < op.n; i += SectorSize {
		var src []byte
		if r.IntN(2) == 0 {
			src = block(uint64(r.IntN(6)))
		} else {
			src = block(op.seed<<8 + uint64(i))
		}
		copy(p[i:i+SectorSize], src[(op.off+i)%BlockSize:])
	}
	return p
}

func (op crashOp) apply(model []byte) {
	switch op.kind {
	case 'W':
		copy(model[op.off:], crashData(op))
	case 'D':
		clear(model[op.off : op.off+op.n])
	}
}

func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("run by TestCrashRecovery")
	}
	seed, _ := strconv.ParseUint(os.Getenv(crashEnvSeed), 10, 64)
	e, err := Open(dir, Options{CommitChanges: 16, CommitInterval: 7 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Device("c")
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "ops.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 3))
	for i := 0; ; i++ {
		off := int64(r.IntN(crashDevSize/SectorSize)) * SectorSize
		n := min(int64(r.IntN(40)+1)*SectorSize, crashDevSize-off)
		op := crashOp{kind: 'W', off: off, n: n, seed: seed<<20 + uint64(i)}
		if r.IntN(8) == 0 {
			op.kind = 'D'
		}
		fmt.Fprintf(logf, "%c %d %d %d\n", op.kind, op.off, op.n, op.seed)
		if op.kind == 'W' {
			_, err = d.WriteAt(crashData(op), op.off)
		} else {
			err = d.Discard(op.off, op.n)
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.IntN(6) == 0 {
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(logf, "F 0 0 0\n")
		}
	}
}

func readCrashLog(t *testing.T, path string) []crashOp {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, _ := os.ReadFile(path)
	var ops []crashOp
	sc := bufio.NewScanner(bytes.NewReader(data))
	complete := bytes.LastIndexByte(data, '\n') + 1
	read := 0
	for sc.Scan() {
		line := sc.Text()
		read += len(line) + 1
		if read > complete {
			break // a torn last line
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			t.Fatalf("bad log line %q", line)
		}
		off, _ := strconv.ParseInt(f[1], 10, 64)
		n, _ := strconv.ParseInt(f[2], 10, 64)
		seed, _ := strconv.ParseUint(f[3], 10, 64)
		ops = append(ops, crashOp{kind: f[0][0], off: off, n: n, seed: seed})
	}
	return ops
}

// waitForFile waits until path exists; false if exited closes or the
// timeout passes first.
func waitForFile(path string, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		select {
		case <-exited:
			_, err := os.Stat(path)
			return err == nil
		case <-deadline:
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	iterations := 25
	if s := os.Getenv("BLOCKHASH_CRASH_ITERATIONS"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	dir := t.TempDir()
	if err := Create(dir, Options{ExtentSize: 128 * BlockSize}); err != nil {
		t.Fatal(err)
	}
	e, err := Open(dir, Options{CommitInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateDevice("c", crashDevSize); err != nil {
		t.Fatal(err)
	}
	e.Close()
	model := make([]byte, crashDevSize)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var totalOps, totalFlushes int
	for it := range iterations {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvSeed+"="+strconv.Itoa(it+1))
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		logPath := filepath.Join(dir, "ops.log")
		if err := os.Remove(logPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		// The kill timer starts once the child has opened the store and
		// created its log: a slow start (-race, a loaded machine) must not
		// make the kill land before the child runs.
		if !waitForFile(logPath, exited, time.Minute) {
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			t.Fatalf("iteration %d: the child did not start writing:\n%s", it, stderr.String())
		}
		time.Sleep(time.Duration(r.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		if strings.Contains(stderr.String(), "FAIL") {
			t.Fatalf("iteration %d: child failed:\n%s", it, stderr.String())
		}
		ops := readCrashLog(t, logPath)
		lastFlush := -1
		for i, op := range ops {
			if op.kind == 'F' {
				lastFlush = i
				totalFlushes++
			}
		}
		totalOps += len(ops)
		// Candidates: the model after every operation from the last flush on.
		flushed := bytes.Clone(model)
		for _, op := range ops[:lastFlush+1] {
			op.apply(flushed)
		}
		e, err := Open(dir, Options{CommitInterval: -1})
		if err != nil {
			t.Fatalf("iteration %d: reopen: %v", it, err)
		}
		d, err := e.Device("c")
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, crashDevSize)
		if _, err := d.ReadAt(got, 0); err != nil {
			t.Fatalf("iteration %d: read: %v", it, err)
		}
		cand, matched := flushed, -1
		for k := lastFlush + 1; ; k++ {
			if bytes.Equal(got, cand) {
				matched = k
				break
			}
			if k >= len(ops) {
				break
			}
			cand = bytes.Clone(cand)
			ops[k].apply(cand)
		}
		if matched < 0 {
			t.Fatalf("iteration %d: after the crash the device matches no state at or after the last flush (op %d of %d)", it, lastFlush, len(ops))
		}
		rep, err := e.Fsck(false)
		if err != nil || !rep.OK() {
			t.Fatalf("iteration %d: fsck: %v %+v", it, err, rep)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		model = got
	}
	t.Logf("%d crashes, %d operations, %d acknowledged flushes checked", iterations, totalOps, totalFlushes)
	if totalFlushes == 0 {
		t.Fatal("no flush was acknowledged before any kill: the test checked nothing")
	}
}
