// Command blockhash manages a deduplicating block store and serves its
// devices. Run "blockhash help" for the commands.
package main

import (
	"encoding/json"
	"errors"
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
	store  string
	socket string
	stdout io.Writer
	stderr io.Writer
	log    zerolog.Logger
}

type command struct {
	name    string
	usage   string
	summary string
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
	e := &env{store: os.Getenv("BLOCKHASH_STORE"), socket: os.Getenv("BLOCKHASH_SOCKET"), stdout: stdout, stderr: stderr}
	if e.store == "" {
		e.store = DefaultStore
	}
	if e.socket == "" {
		e.socket = daemon.DefaultSocket
	}
	level := zerolog.WarnLevel
	cpuprofile := ""
	// Global flags come before the command.
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		a := args[0]
		switch {
		case a == "--store" || a == "-store":
			if len(args) < 2 {
				fmt.Fprintln(stderr, "blockhash: --store needs a directory")
				return 2
			}
			e.store, args = args[1], args[2:]
			continue
		case strings.HasPrefix(a, "--store="):
			e.store = strings.TrimPrefix(a, "--store=")
		case a == "--socket":
			if len(args) < 2 {
				fmt.Fprintln(stderr, "blockhash: --socket needs a path")
				return 2
			}
			e.socket, args = args[1], args[2:]
			continue
		case a == "--cpuprofile":
			if len(args) < 2 {
				fmt.Fprintln(stderr, "blockhash: --cpuprofile needs a file")
				return 2
			}
			cpuprofile, args = args[1], args[2:]
			continue
		case a == "-v" || a == "--verbose":
			level = zerolog.InfoLevel
		case a == "--debug":
			level = zerolog.DebugLevel
		case a == "-h" || a == "--help":
			args = []string{"help"}
			continue
		default:
			fmt.Fprintf(stderr, "blockhash: unknown global flag %s (see blockhash help)\n", a)
			return 2
		}
		args = args[1:]
	}
	e.log = zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true}).Level(level).With().Timestamp().Logger()
	if len(args) == 0 {
		printHelp(stderr)
		return 2
	}
	if args[0] == "help" || args[0] == "--help" {
		printHelp(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "blockhash: unknown command %q (see blockhash help)\n", args[0])
		return 2
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
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
	if err := c.run(e, args[1:]); err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "blockhash %s: %s\nusage: blockhash %s %s\n", c.name, ue.msg, c.name, c.usage)
			return 2
		}
		fmt.Fprintf(stderr, "blockhash %s: %s\n", c.name, oneLine(err))
		return 1
	}
	return 0
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "usage: blockhash [--store DIR] [--socket PATH] [-v|--debug] [--cpuprofile FILE] COMMAND [ARGS]\n\nThe store defaults to $BLOCKHASH_STORE or %s, the daemon's socket to\n$BLOCKHASH_SOCKET or %s.\n\nCommands:\n", DefaultStore, daemon.DefaultSocket)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-8s %s\n           blockhash %s %s\n", n, c.summary, n, c.usage)
	}
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
// fsck): they write nothing, so they work on a full file system.
var readOnly = engine.Options{CommitInterval: -1, ReadOnly: true}
