package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"blockhash/daemon"
)

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseArgs parses flags that may stand before, between or after the
// positional arguments, which it returns. want is the number of positional
// arguments (-1: at least one).
func parseArgs(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	return parseArgsRange(fs, args, want, want)
}

// parseArgsRange is parseArgs for between lo and hi arguments (hi -1: no
// limit). -h or --help anywhere before "--" returns a *helpError holding
// fs, so the help lists exactly the flags the command parses; a flag fs
// does not define is a one-line usage error naming it.
func parseArgsRange(fs *flag.FlagSet, args []string, lo, hi int) ([]string, error) {
	if lo < 0 {
		lo = 1
	}
	if err := checkFlags(fs, args); err != nil {
		return nil, err
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	switch {
	case len(pos) < lo && lo == hi:
		return nil, usagef("want %d argument(s), got %d", lo, len(pos))
	case len(pos) < lo:
		return nil, usagef("missing arguments")
	case hi >= 0 && len(pos) > hi:
		return nil, usagef("too many arguments")
	}
	return pos, nil
}

// parseSize parses sizes like 4096, 512K, 512M, 20G, 1T, 1.5G, 20GiB.
// Suffixes are binary (K = 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(t), "B"), "I")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		case 'P':
			mult = 1 << 50
		}
		if mult > 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || v <= 0 || math.IsInf(v, 0) || math.IsNaN(v) || strings.ContainsAny(t, "eEx") {
		return 0, fmt.Errorf("invalid size %q (use a number with an optional K, M, G or T suffix, like 20G)", s)
	}
	f := v * float64(mult)
	if f >= math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if f != math.Trunc(f) {
		return 0, fmt.Errorf("size %q is not a whole number of bytes", s)
	}
	return int64(f), nil
}

// sizeFlag is a flag.Value holding a parsed size.
type sizeFlag struct {
	v   int64
	set bool
}

// String is the size in the largest binary unit that divides it: 256M.
func (f *sizeFlag) String() string {
	if f == nil || f.v == 0 {
		return "0"
	}
	for i := 4; i >= 1; i-- {
		if u := int64(1) << (10 * i); f.v%u == 0 {
			return strconv.FormatInt(f.v/u, 10) + string("KMGT"[i-1])
		}
	}
	return strconv.FormatInt(f.v, 10)
}
func (f *sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

// human formats a byte count: 1.5 GiB.
func human(n int64) string { return daemon.HumanSize(n) }

// helpError is -h or --help on a command's line: the command prints its
// help from fs, the flag set it parses with, and exits 0.
type helpError struct{ fs *flag.FlagSet }

func (*helpError) Error() string { return "help requested" }

// checkFlags walks args as fs.Parse will (up to "--"), and finds the first
// -h/--help or flag fs does not define. It reports the flag as typed.
func checkFlags(fs *flag.FlagSet, args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return nil
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f := fs.Lookup(name)
		switch {
		case f == nil && (name == "h" || name == "help"):
			return &helpError{fs}
		case f == nil:
			return usagef("unknown flag %s", a)
		case !hasValue && !isBoolFlag(f):
			i++ // its value
		}
	}
	return nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// printFlags prints fs's flags like flag.PrintDefaults, but with the
// spelling the command line uses (--name for long names, -n for short ones).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if _, ok := f.Value.(*sizeFlag); ok {
			arg = "SIZE"
		}
		def := f.DefValue
		switch {
		case isBoolFlag(f):
			arg = ""
			if def == "false" {
				def = ""
			}
		case arg == "string":
			if def != "" {
				def = fmt.Sprintf("%q", def)
			}
		case def == "0" || def == "0s":
			def = ""
		}
		switch arg {
		case "int", "uint", "string", "float", "duration", "value":
			arg = strings.ToUpper(arg) // a type's name, not a named placeholder
		}
		printFlag(w, flagName(f.Name), arg, usage, def)
	})
}

func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func printFlag(w io.Writer, name, arg, usage, def string) {
	if arg != "" {
		name += " " + arg
	}
	if def != "" {
		usage += " (default " + def + ")"
	}
	fmt.Fprintf(w, "  %s\n    \t%s\n", name, strings.ReplaceAll(usage, "\n", "\n    \t"))
}
