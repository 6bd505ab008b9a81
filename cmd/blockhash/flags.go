package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
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

// parseArgsRange is parseArgs for between lo and hi arguments (hi -1: no limit).
func parseArgsRange(fs *flag.FlagSet, args []string, lo, hi int) ([]string, error) {
	if lo < 0 {
		lo = 1
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

func (f *sizeFlag) String() string { return strconv.FormatInt(f.v, 10) }
func (f *sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

// human formats a byte count: 1.5 GiB.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
