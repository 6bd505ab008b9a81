// Command blockhash manages a deduplicating block store and serves its
// devices. Run "blockhash help" for the commands.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"blockhash/daemon"
	"blockhash/engine"
)

// DefaultStore is where the store lives unless --store or BLOCKHASH_STORE
// says otherwise.
const DefaultStore = "/var/lib/blockhash"

type env struct {
	store      string
	socket     string
	cpuprofile string
	level      zerolog.Level
	logFormat  string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
	log        zerolog.Logger
	// domain is the dedup domain of a device an import creates (import's
	// --domain; an existing device must be in it).
	domain string
	// noCompress: send, sync and migrate send blocks as they are
	// (--compress none).
	noCompress bool
}

// command is one subcommand. Its flags are declared in run, on the flag
// set it gives parseArgs: -h or --help makes parseArgs return a
// *helpError carrying that flag set, so the help printed lists exactly
// the flags parsed (run must parse before it does anything else).
type command struct {
	name    string
	usage   string // after "blockhash NAME"
	summary string // one line, for "blockhash help"
	help    string // the description in "blockhash help NAME"; summary if empty
	run     func(env *env, args []string) error
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// usageError is a bad command line: printed with the command's usage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// printJSON writes v to standard output as indented JSON (every --json).
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func main() {
	setIOProcs()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// setIOProcs gives the Go scheduler two Ps per core unless the GOMAXPROCS
// environment variable says otherwise. Blockhash does its block I/O with
// blocking system calls from many goroutines (one per ublk request), and
// each ublk queue thread blocks in io_uring_enter; a P stuck in a system
// call is handed to other goroutines only when the runtime's monitor
// notices, after up to 10 ms when the process looks idle. With one P per
// core, a core keeps about one read in flight, not the dozens the device
// is asked for. `blockhash bench` on this project's 2-core machine, store
// and plain file alike: 2 Ps, about 27k random 4 KiB reads per second; 4
// Ps, about 60k; 8 Ps, 66k to 79k, but duplicate ingest lost 10-20% to
// the extra threads. The daemon adds one P per ublk queue it serves
// (daemon.Options.QueueProcs).
func setIOProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2 * runtime.NumCPU())
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	e := &env{store: os.Getenv("BLOCKHASH_STORE"), socket: os.Getenv("BLOCKHASH_SOCKET"), stdin: os.Stdin, stdout: stdout, stderr: stderr, level: zerolog.WarnLevel}
	if e.store == "" {
		e.store = DefaultStore
	}
	if e.socket == "" {
		e.socket = daemon.DefaultSocket
	}
	// Global flags stand anywhere: before the command, after it, between
	// its arguments.
	args, err := e.globalFlags(args)
	if err != nil {
		fmt.Fprintf(stderr, "blockhash: %v (see blockhash help)\n", err)
		return 2
	}
	switch e.logFormat {
	case "", "console":
		e.log = zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true}).Level(e.level).With().Timestamp().Logger()
	case "json":
		e.log = zerolog.New(stderr).Level(e.level).With().Timestamp().Logger()
	default:
		fmt.Fprintf(stderr, "blockhash: --log-format %q: want console or json\n", e.logFormat)
		return 2
	}
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		args[0] = "help"
	case "-version", "--version":
		args[0] = "version"
	}
	if strings.HasPrefix(args[0], "-") && args[0] != "-" {
		fmt.Fprintf(stderr, "blockhash: unknown flag %s before the command (see blockhash help)\n", args[0])
		return 2
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "blockhash: unknown command %q (see blockhash help)\n", args[0])
		return 2
	}
	if e.cpuprofile != "" {
		f, err := os.Create(e.cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "blockhash: --cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	return e.runCommand(c, args[1:])
}

// runCommand runs c and turns its error into output and an exit status:
// 0, 1 for a failure, 2 for a bad command line.
func (e *env) runCommand(c *command, args []string) int {
	err := c.run(e, args)
	var he *helpError
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &he):
		printCommandHelp(e.stdout, c, he.fs)
		return 0
	case errors.As(err, &ue):
		see := "blockhash help " + c.name
		if c.name == "help" {
			see = "blockhash help"
		}
		fmt.Fprintf(e.stderr, "blockhash %s: %s (see %s)\n", c.name, ue.msg, see)
		return 2
	}
	fmt.Fprintf(e.stderr, "blockhash %s: %s\n", c.name, oneLine(err))
	return 1
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func init() {
	register(&command{name: "help", usage: "[COMMAND]", summary: "list the commands, or print a command's usage, description and flags", run: runHelp})
	register(&command{name: "version", usage: "", summary: "print blockhash's version (also: blockhash --version)", run: runVersion})
}

func runHelp(e *env, args []string) error {
	pos, err := parseArgsRange(newFlags("help"), args, 0, 1)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		printHelp(e.stdout)
		return nil
	}
	c, ok := commands[pos[0]]
	if !ok {
		return usagef("unknown command %q", pos[0])
	}
	// Every command parses its flags before it does anything: asked for
	// help, it returns a *helpError holding its flag set.
	err = c.run(e, []string{"--help"})
	var he *helpError
	if !errors.As(err, &he) {
		return fmt.Errorf("command %s printed no help (%v)", c.name, err)
	}
	printCommandHelp(e.stdout, c, he.fs)
	return nil
}

func runVersion(e *env, args []string) error {
	if _, err := parseArgs(newFlags("version"), args, 0); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "blockhash %s\n", versionString())
	return nil
}

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: blockhash [GLOBAL FLAGS] COMMAND [ARGS]\n       blockhash help COMMAND\n       blockhash --version\n\n"+
		"Global flags stand before or after the command. The store defaults to\n$BLOCKHASH_STORE or %s, the daemon's socket to\n$BLOCKHASH_SOCKET or %s.\n\nCommands:\n", DefaultStore, daemon.DefaultSocket)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-8s %s\n           blockhash %s\n", n, c.summary, strings.TrimSpace(n+" "+c.usage))
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	printGlobalFlags(w)
}

// printCommandHelp prints c's usage line, description, flags (from fs,
// the flag set c parses with) and the global flags.
func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: blockhash %s\n\n", strings.TrimSpace(c.name+" "+c.usage))
	desc := c.help
	if desc == "" {
		desc = strings.ToUpper(c.summary[:1]) + c.summary[1:] + "."
	}
	fmt.Fprintf(w, "%s\n", wrap(desc, 76))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
	}
	fmt.Fprintln(w, "\nGlobal flags (before or after the command):")
	printGlobalFlags(w)
}

// wrap breaks s into lines of at most width characters at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(s) {
		switch {
		case i == 0:
		case n+1+len(word) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}

// openStore opens the store for a command that works on it directly.
func (e *env) openStore(o engine.Options) (*engine.Engine, error) {
	o.Logger = e.log
	return engine.Open(e.store, o)
}

// noBackground is for short-lived commands: they commit when they close.
var noBackground = engine.Options{CommitInterval: -1}

// freeing is for commands that free space (delete, fsck --repair): on a
// full file system they release the store's reserve to run.
var freeing = engine.Options{CommitInterval: -1, FreeingSpace: true}

// readOnly is for commands that only read the store (stats, list, export,
// fsck): they write nothing, so they work on a full file system. A commit
// a crash interrupted is replayed first (engine.Options.ReplayFirst), as
// any command that writes would.
var readOnly = engine.Options{CommitInterval: -1, ReadOnly: true, ReplayFirst: true}
