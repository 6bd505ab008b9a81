package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// runArgs runs the command line as is (no --store or --socket added).
func runArgs(args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// commandFlags is the flag set c parses with, as its --help reports it.
func commandFlags(t *testing.T, c *command) *flag.FlagSet {
	t.Helper()
	e := &env{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	var he *helpError
	if err := c.run(e, []string{"--help"}); !errors.As(err, &he) {
		t.Fatalf("%s --help: got %v, want a help request (parse flags before doing anything)", c.name, err)
	}
	return he.fs
}

// Every command prints its help on stdout with exit status 0 for -h and
// --help, naming every flag it parses and every global flag, without
// touching the store or the daemon; help CMD prints the same.
func TestHelpEveryCommand(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	sock := filepath.Join(dir, "sock")
	for _, name := range commandNames() {
		c := commands[name]
		fs := commandFlags(t, c)
		want := []string{"usage: blockhash " + name, "Global flags"}
		var flags []string
		fs.VisitAll(func(f *flag.Flag) { flags = append(flags, flagName(f.Name)) })
		for _, g := range globalFlagTable {
			flags = append(flags, flagName(g.names[0]))
		}
		var first string
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"--store", store, name, "-help"}, {"help", name}} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := runArgs(append(args, "--socket", sock)...)
				if r.code != 0 || r.stderr != "" {
					t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
				}
				for _, w := range want {
					if !strings.Contains(r.stdout, w) {
						t.Errorf("help does not say %q:\n%s", w, r.stdout)
					}
				}
				for _, f := range flags {
					if !regexp.MustCompile(`\n  (\S+, )?` + f + `[ ,\n]`).MatchString(r.stdout) {
						t.Errorf("help does not list flag %s:\n%s", f, r.stdout)
					}
				}
				if first == "" {
					first = r.stdout
				} else if r.stdout != first {
					t.Errorf("help differs from %s --help:\n%s\n---\n%s", name, r.stdout, first)
				}
			})
		}
		if _, err := os.Stat(store); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s --help made the store: %v", name, err)
		}
	}
}

// A command's help shows defaults the way its flags parse them.
func TestHelpShowsDefaults(t *testing.T) {
	r := runArgs("add", "--help")
	for _, w := range []string{"--size SIZE", "-d DEPTH", "(default 128)", "--read-only", "--logical-block-size SIZE"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("add --help does not say %q:\n%s", w, r.stdout)
		}
	}
	r = runArgs("demo", "--help")
	if !strings.Contains(r.stdout, "(default 256M)") {
		t.Errorf("demo --help does not give --size's default as 256M:\n%s", r.stdout)
	}
}

// The usage line of each command names exactly the flags it parses (its
// own, or global ones), so the one-line summaries in help cannot drift.
func TestUsageNamesEveryFlag(t *testing.T) {
	tok := regexp.MustCompile(`(?:^|[\s\[|(])(--?[a-z][a-z0-9-]*)`)
	for _, name := range commandNames() {
		c := commands[name]
		fs := commandFlags(t, c)
		inUsage := map[string]bool{}
		for _, m := range tok.FindAllStringSubmatch(c.usage, -1) {
			inUsage[m[1]] = true
			n := strings.TrimLeft(m[1], "-")
			if fs.Lookup(n) == nil && lookupGlobal(n) == nil {
				t.Errorf("%s: usage %q names %s, which it does not take", name, c.usage, m[1])
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !inUsage[flagName(f.Name)] {
				t.Errorf("%s: usage %q does not name %s", name, c.usage, flagName(f.Name))
			}
		})
	}
}

// README's command table has a row for every command, naming each of its
// long flags.
func TestREADMECommandTable(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.SplitN(line, " | ", 2)
		for _, m := range regexp.MustCompile("`([a-z]+)").FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] += line
		}
	}
	for _, name := range commandNames() {
		row, ok := rows[name]
		if !ok {
			t.Errorf("README's command table has no row for %s", name)
			continue
		}
		commandFlags(t, commands[name]).VisitAll(func(f *flag.Flag) {
			if len(f.Name) > 1 && !strings.Contains(row, "--"+f.Name) {
				t.Errorf("README's row for %s does not name --%s", name, f.Name)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}, {"-version"}, {"--debug", "version"}} {
		r := runArgs(args...)
		if r.code != 0 || r.stderr != "" || !regexp.MustCompile(`^blockhash \S+\n$`).MatchString(r.stdout) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	defer func(v string) { version = v }(version)
	version = "v1.2.3-4-gabcdef"
	if r := runArgs("--version"); r.stdout != "blockhash v1.2.3-4-gabcdef\n" {
		t.Errorf("with -X main.version: %q", r.stdout)
	}
}

func TestHelpLists(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := runArgs(args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		for _, n := range commandNames() {
			if !strings.Contains(r.stdout, "\n  "+n+" ") {
				t.Errorf("%v does not list %s", args, n)
			}
		}
	}
}

// Global flags stand before the command, after it and between its
// arguments, in any spelling; the output is the same.
func TestGlobalFlagsAnywhere(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	sock := filepath.Join(dir, "none.sock")
	mustCLI(t, store, "init", "--extent-size", "4M")
	mustCLI(t, store, "create", "vm1", "--size", "1M")
	tests := []struct {
		name string
		base []string
		alts [][]string
	}{
		{"stats", []string{"--store", store, "--socket", sock, "stats", "vm1", "--json"}, [][]string{
			{"stats", "--store", store, "--socket", sock, "vm1", "--json"},
			{"stats", "vm1", "--store=" + store, "--json", "--socket=" + sock},
			{"stats", "--json", "vm1", "-store", store, "--debug", "-socket", sock},
			{"--socket", sock, "stats", "vm1", "--json", "--store", store},
		}},
		{"list", []string{"--store", store, "--socket", sock, "list"}, [][]string{
			{"list", "--store", store, "--socket", sock},
			{"-v", "list", "--socket", sock, "--store=" + store},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := runArgs(tc.base...)
			if want.code != 0 || !strings.Contains(want.stdout, "vm1") {
				t.Fatalf("%v: exit %d, stdout %q, stderr %q", tc.base, want.code, want.stdout, want.stderr)
			}
			for _, args := range tc.alts {
				if r := runArgs(args...); r != want {
					t.Errorf("%v:\n%+v\nwant (as %v)\n%+v", args, r, tc.base, want)
				}
			}
		})
	}
	// --socket after the command reaches the daemon it names.
	dstore := filepath.Join(t.TempDir(), "dstore")
	mustCLI(t, dstore, "init", "--extent-size", "4M")
	dsock, _ := startDaemon(t, dstore)
	for _, args := range [][]string{{"--socket", dsock, "status"}, {"status", "--socket", dsock}, {"status", "--socket=" + dsock, "--debug"}} {
		if r := runArgs(args...); r.code != 0 || !strings.Contains(r.stdout, "daemon running on "+dsock) {
			t.Errorf("%v: %+v", args, r)
		}
	}
}

// serve takes --socket and --store after its name (as its usage says):
// they reach the daemon's options; here the store does not exist, so it
// fails on opening it, before any device or socket is made.
func TestServeGlobalFlags(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "nostore")
	sock := filepath.Join(dir, "x.sock")
	for _, args := range [][]string{
		{"--store", store, "serve", "--socket", sock},
		{"serve", "--store", store, "--socket", sock},
		{"serve", "--socket", sock, "--stop-devices-on-exit", "--store=" + store},
	} {
		e := &env{}
		rest, err := e.globalFlags(args)
		if err != nil || e.store != store || e.socket != sock || rest[0] != "serve" {
			t.Errorf("%v: store %q, socket %q, rest %v, err %v", args, e.store, e.socket, rest, err)
		}
		r := runArgs(args...)
		if r.code != 1 || !strings.Contains(r.stderr, "blockhash serve: ") || !strings.Contains(r.stderr, store) {
			t.Errorf("%v: %+v", args, r)
		}
		if _, err := os.Stat(sock); err == nil {
			t.Errorf("%v made the socket", args)
		}
	}
}

// A flag that is neither global nor the command's is a one-line error
// naming the flag and the command, exit status 2.
func TestUnknownFlags(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--bogus"}, []string{"blockhash serve:", "--bogus"}},
		{[]string{"add", "vm1", "--nope", "--size", "1M"}, []string{"blockhash add:", "--nope"}},
		{[]string{"stats", "-x"}, []string{"blockhash stats:", "-x"}},
		{[]string{"list", "--json=1", "--sizes"}, []string{"blockhash list:", "--sizes"}},
		{[]string{"import", "vm1", "x.img", "--zzz"}, []string{"blockhash import:", "--zzz"}},
		{[]string{"snapshot", "vm1", "--bogus=1", "s"}, []string{"blockhash snapshot:", "--bogus=1"}},
		{[]string{"--bogus", "list"}, []string{"blockhash:", "--bogus"}},
		{[]string{"help", "nope"}, []string{"blockhash help:", `"nope"`}},
		{[]string{"stats", "--store"}, []string{"--store needs"}},
		{[]string{"list", "--debug=1"}, []string{"--debug takes no value"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := snapshot(t, store)
			r := cli(t, store, tc.args...)
			if r.code != 2 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing", r.code, r.stdout)
			}
			if strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("not one line: %q", r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not say %q", r.stderr, w)
				}
			}
			if snapshot(t, store) != before {
				t.Error("the store changed")
			}
		})
	}
}

// TestLogFormatJSON: --log-format json makes every log line one JSON
// object; an unknown format is a one-line usage error.
func TestLogFormatJSON(t *testing.T) {
	store := filepath.Join(t.TempDir(), "s")
	mustCLI(t, store, "init")
	mustCLI(t, store, "create", "a", "--size", "1M")
	r := cli(t, store, "delete", "a", "-v", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("delete: %d %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatal("no log line at -v")
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["level"] == nil || m["message"] == nil {
			t.Fatalf("not a JSON log line: %q (%v)", l, err)
		}
	}
	r = cli(t, store, "list", "--log-format", "xml")
	if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Fatalf("unknown format: exit %d, %q", r.code, r.stderr)
	}
}
