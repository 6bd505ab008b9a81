package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"blockhash/daemon"
	"blockhash/engine"
	"blockhash/ublk"
)

// fakeExporter serves nothing: it stands in for the kernel's ublk driver
// so that a daemon runs in the test process.
type fakeExporter struct {
	mu   sync.Mutex
	next int
}

type fakeExport struct {
	id   int
	done chan struct{}
	once sync.Once
}

func (f *fakeExport) ID() int               { return f.id }
func (f *fakeExport) BlockPath() string     { return fmt.Sprintf("/dev/ublkb%d", f.id) }
func (f *fakeExport) Done() <-chan struct{} { return f.done }
func (f *fakeExport) Stop() error           { f.once.Do(func() { close(f.done) }); return nil }
func (f *fakeExport) Abandon() error        { return f.Stop() }

func (x *fakeExporter) Export(cfg ublk.Config, b ublk.Backend) (daemon.Export, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := cfg.ID
	if id < 0 {
		id = x.next
		x.next++
	}
	return &fakeExport{id: id, done: make(chan struct{})}, nil
}
func (x *fakeExporter) Recover(id int, b ublk.Backend) (daemon.Export, error) {
	return nil, ublk.ErrNoDevice
}
func (x *fakeExporter) Lookup(id int) (daemon.KernelDevice, error) {
	return daemon.KernelDevice{}, ublk.ErrNoDevice
}
func (x *fakeExporter) Delete(id int) error { return nil }
func (x *fakeExporter) Close() error        { return nil }

// startDaemon runs a daemon on store (over fakeExporter) until stop is
// called (at the latest when the test ends), and returns its socket.
func startDaemon(t *testing.T, store string) (sock string, stop func()) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "d.sock")
	d, err := daemon.Open(daemon.Options{Store: store, Socket: sock, Exporter: &fakeExporter{},
		Engine: engine.Options{CommitInterval: -1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Listen(); err != nil {
		d.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- d.Serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-served
			if err := d.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

// cliSock runs the command line with the daemon socket sock.
func cliSock(store, sock string, args ...string) result {
	var out, errb bytes.Buffer
	code := run(append([]string{"--store", store, "--socket", sock}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// snapshot, clone, diff, rollback and delete print the same whether they
// open the store or go through a running daemon, and do the same.
func TestSnapshotCommands(t *testing.T) {
	steps := []struct {
		args   []string
		code   int
		stdout string
		stderr string // in standard error
	}{
		{[]string{"snapshot", "d", "s"}, 0, "snapshot d@s taken\n", ""},
		{[]string{"clone", "d@s", "c"}, 0, "cloned d@s to c\n", ""},
		{[]string{"diff", "d@s", "c", "--json"}, 0, "[]\n", ""},
		{[]string{"diff", "d@s", "d"}, 0, "", "0 ranges"},
		{[]string{"snapshot", "d", "s"}, 1, "", "device exists"},
		{[]string{"snapshot", "d@s", "t"}, 1, "", "a snapshot is taken of a device"},
		{[]string{"rollback", "d", "nope"}, 1, "", "no such device"},
		{[]string{"rollback", "d", "s"}, 0, "rolled d back to d@s\n", ""},
		{[]string{"delete", "d"}, 1, "", "recursive"},
		{[]string{"delete", "d@s"}, 0, "deleted d@s\n", ""},
		{[]string{"snapshot", "c", "s2"}, 0, "snapshot c@s2 taken\n", ""},
		{[]string{"delete", "c", "--recursive"}, 0, "deleted c\n", ""},
		{[]string{"delete", "d"}, 0, "deleted d\n", ""},
		{[]string{"delete", "d"}, 1, "", "no such device"},
	}
	for _, online := range []bool{false, true} {
		t.Run(map[bool]string{false: "offline", true: "daemon"}[online], func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			mustCLI(t, store, "init", "--extent-size", "64K")
			mustCLI(t, store, "import", "d", image(t, dir, "d.img", 40))
			sock := filepath.Join(dir, "no-daemon.sock")
			if online {
				sock, _ = startDaemon(t, store)
			}
			for _, s := range steps {
				r := cliSock(store, sock, s.args...)
				if r.code != s.code || r.stdout != s.stdout || !strings.Contains(r.stderr, s.stderr) ||
					(r.code != 0 && strings.Count(r.stderr, "\n") != 1) {
					t.Fatalf("blockhash %v: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr with %q",
						s.args, r.code, r.stdout, r.stderr, s.code, s.stdout, s.stderr)
				}
			}
			// Every device is gone: so is its space.
			r := cliSock(store, sock, "stats", "--json")
			if r.code != 0 || !strings.Contains(r.stdout, `"devices": []`) && !strings.Contains(r.stdout, `"devices": null`) {
				t.Fatalf("stats after deleting everything: %d %s %s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// Through the daemon, rolling back or deleting a served device (or one
// whose snapshot is served) is refused with what to do; offline, a device
// the daemon remembers as served is refused likewise. A snapshot is
// served read-only, as is a device added with --read-only.
func TestSnapshotCommandsServed(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "64K")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 40))
	mustCLI(t, store, "import", "e", image(t, dir, "e.img", 8))
	mustCLI(t, store, "snapshot", "d", "s")
	mustCLI(t, store, "snapshot", "e", "s")
	func() {
		sock, stop := startDaemon(t, store)
		defer stop()
		for _, args := range [][]string{{"add", "d"}, {"add", "e@s"}, {"add", "e", "--read-only"}} {
			if r := cliSock(store, sock, args...); r.code != 0 {
				t.Fatalf("%v: %s", args, r.stderr)
			}
		}
		refusals := []struct {
			args []string
			want string
		}{
			{[]string{"rollback", "d", "s"}, "blockhash del d --keep-data"},
			{[]string{"delete", "d", "--recursive"}, "blockhash del d --keep-data"},
			{[]string{"delete", "e@s"}, "blockhash del e@s --keep-data"},
			{[]string{"del", "d"}, "blockhash delete d --recursive"},
		}
		for _, tc := range refusals {
			r := cliSock(store, sock, tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Fatalf("%v: exit %d %q, want a one-line refusal with %q", tc.args, r.code, r.stderr, tc.want)
			}
		}
		list := cliSock(store, sock, "list").stdout
		for _, name := range []string{"d", "e@s", "e"} {
			want := "rw"
			if name != "d" {
				want = "ro"
			}
			found := false
			for _, line := range strings.Split(list, "\n") {
				f := strings.Fields(line)
				if len(f) > 2 && f[0] == name {
					found = true
					if f[len(f)-1] != want {
						t.Fatalf("list shows %s as %s, want %s:\n%s", name, f[len(f)-1], want, list)
					}
				}
			}
			if !found {
				t.Fatalf("list lacks %s:\n%s", name, list)
			}
		}
		// list shows the store's volumes too: d@s is not served.
		if !regexp.MustCompile(`\nd@s +snapshot .* - +- +-\n`).MatchString(list) {
			t.Fatalf("list through the daemon lacks the store's snapshots:\n%s", list)
		}
		// A snapshot can be taken of a served device.
		if r := cliSock(store, sock, "snapshot", "d", "s2"); r.code != 0 || r.stdout != "snapshot d@s2 taken\n" {
			t.Fatalf("snapshot of a served device: %d %q %q", r.code, r.stdout, r.stderr)
		}
	}() // the daemon stops; it remembers d, e and e@s as served
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollback", "d", "s"}, "blockhash del d --keep-data"},
		{[]string{"delete", "d", "--recursive"}, "blockhash del d --keep-data"},
		{[]string{"delete", "e", "--recursive"}, "blockhash del e"},
	} {
		r := cli(t, store, tc.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("offline %v: exit %d %q, want a one-line refusal with %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if out := mustCLI(t, store, "list"); !strings.Contains(out, "d@s2") {
		t.Fatalf("the snapshot taken through the daemon is not in the store:\n%s", out)
	}
}
