package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// timing matches the figures of an import summary that vary run to run.
var timing = regexp.MustCompile(`in [0-9.]+s \([0-9.+Inf]+ MiB/s\)`)

// create, import (file and standard input), export (file, stdout,
// snapshot) and fsck print the same whether they open the store or go
// through a running daemon, fail the same, and leave the same content.
func TestImportExportThroughDaemon(t *testing.T) {
	type step struct {
		args  []string
		stdin string // a file read as standard input
	}
	outputs := map[bool][]string{}
	img := image(t, t.TempDir(), "img", 40) // 160 KiB, a zero block in 4
	data, _ := os.ReadFile(img)
	for _, online := range []bool{false, true} {
		t.Run(map[bool]string{false: "offline", true: "daemon"}[online], func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			mustCLI(t, store, "init", "--extent-size", "64K")
			half := filepath.Join(dir, "half")
			os.WriteFile(half, data[:80<<10], 0o600)
			odd := filepath.Join(dir, "odd")
			os.WriteFile(odd, data[:80<<10+100], 0o600)
			exists := filepath.Join(dir, "exists")
			os.WriteFile(exists, []byte("x"), 0o600)
			sock := filepath.Join(dir, "no-daemon.sock")
			if online {
				sock, _ = startDaemon(t, store)
			}
			steps := []step{
				{args: []string{"create", "a", "--size", "1M"}},
				{args: []string{"create", "a", "--size", "1M"}},
				{args: []string{"create", "bad@x", "--size", "1M"}},
				{args: []string{"import", "b", img}},
				{args: []string{"import", "c", "-", "--size", "160K"}, stdin: img},
				{args: []string{"import", "a", "-"}, stdin: img},
				{args: []string{"import", "a", img}},
				{args: []string{"export", "b", filepath.Join(dir, "b.out")}},
				{args: []string{"export", "c", "-"}},
				{args: []string{"export", "a", "-"}},
				{args: []string{"export", "b", exists}},
				{args: []string{"export", "nope", filepath.Join(dir, "nope.out")}},
				{args: []string{"snapshot", "b", "s"}},
				{args: []string{"export", "b@s", filepath.Join(dir, "s.out")}},
				{args: []string{"import", "n1", "-", "--size", "1M"}, stdin: half},
				{args: []string{"import", "n2", "-", "--size", "1M"}, stdin: odd},
				{args: []string{"import", "n3", "-", "--size", "64K"}, stdin: half},
				{args: []string{"import", "n4", "-"}, stdin: half},
				{args: []string{"import", "c", "-", "--size", "1M"}, stdin: half},
				{args: []string{"import", "c", "-"}, stdin: img},
				{args: []string{"import", "c", "-", "--size", "160K"}, stdin: half},
				{args: []string{"export", "n1", "-"}},
				{args: []string{"export", "n2", "-"}},
				{args: []string{"fsck"}},
				{args: []string{"fsck", "--json"}},
			}
			var out []string
			for _, s := range steps {
				var r result
				run := func() { r = cliSock(store, sock, s.args...) }
				if s.stdin != "" {
					withStdin(t, s.stdin, run)
				} else {
					run()
				}
				if r.code != 0 && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
					t.Errorf("blockhash %v: error of more than one line:\n%s", s.args, r.stderr)
				}
				if s.args[0] == "export" && s.args[1] == "c" && r.stdout != string(data) {
					t.Errorf("export c - wrote %d bytes, not the image", len(r.stdout))
				}
				if s.args[0] == "export" && s.args[2] == "-" && r.code == 0 {
					r.stdout = fmt.Sprintf("%d bytes, sha256 %x", len(r.stdout), sha256.Sum256([]byte(r.stdout)))
				}
				line := strings.Join(s.args, " ") + ": " + strings.Join([]string{string(rune('0' + r.code)), r.stdout, r.stderr}, "|")
				out = append(out, strings.ReplaceAll(timing.ReplaceAllString(line, "in T"), dir, "DIR"))
			}
			outputs[online] = out
			for _, f := range []string{"b.out", "s.out"} {
				if got, _ := os.ReadFile(filepath.Join(dir, f)); !bytes.Equal(got, data) {
					t.Errorf("%s differs from the image (%d bytes)", f, len(got))
				}
			}
		})
	}
	off, on := outputs[false], outputs[true]
	if len(off) != len(on) {
		t.Fatalf("%d outputs offline, %d through the daemon", len(off), len(on))
	}
	for i := range off {
		if off[i] != on[i] {
			t.Errorf("offline and through the daemon differ:\n%.300q\n%.300q", off[i], on[i])
		}
	}
	// (what the steps print is checked by the offline tests; here it must
	// only be the same, but not all failures)
	if fails := strings.Count(strings.Join(off, "\n"), ": 1|"); fails != 12 {
		t.Errorf("%d steps failed offline, want 12:\n%s", fails, strings.Join(off, "\n"))
	}
}

// Through the daemon: fsck --repair is refused (it needs the store to
// itself); a served device is not imported into (stop serving it first)
// and not exported while writable (export a snapshot), a read-only one
// is.
func TestDaemonRefusesImportExport(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "64K")
	img := image(t, dir, "img", 8)
	mustCLI(t, store, "import", "d", img)
	mustCLI(t, store, "import", "r", img)
	sock, _ := startDaemon(t, store)
	for _, args := range [][]string{{"add", "d"}, {"add", "r", "--read-only"}} {
		if r := cliSock(store, sock, args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"fsck", "--repair"}, "stop the daemon first"},
		{[]string{"import", "d", img}, "blockhash del d --keep-data"},
		{[]string{"export", "d", filepath.Join(dir, "d.out")}, "export a snapshot of it"},
	} {
		r := cliSock(store, sock, tc.args...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("blockhash %v: exit %d, stderr %q; want a one-line error saying %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d.out")); err == nil {
		t.Error("a refused export left its file")
	}
	data, _ := os.ReadFile(img)
	for _, args := range [][]string{{"snapshot", "d", "s"}, {"export", "d@s", filepath.Join(dir, "s.out")}, {"export", "r", filepath.Join(dir, "r.out")}} {
		if r := cliSock(store, sock, args...); r.code != 0 {
			t.Fatalf("%v: %s", args, r.stderr)
		}
	}
	for _, f := range []string{"s.out", "r.out"} {
		if got, _ := os.ReadFile(filepath.Join(dir, f)); !bytes.Equal(got, data) {
			t.Errorf("%s differs from the image", f)
		}
	}
	// The served devices kept serving.
	if r := cliSock(store, sock, "list"); r.code != 0 || strings.Count(r.stdout, "running") != 2 {
		t.Errorf("list: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
