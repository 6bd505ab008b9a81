package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/rs/zerolog"

	"blockhash/daemon"
)

// globalFlag is a flag every command takes, before or after the command's
// name. The table is the one place they are declared: parsing and every
// help text use it.
type globalFlag struct {
	names []string // long name first: "verbose", "v"
	arg   string   // the value's placeholder; "" for a switch
	usage string
	def   string // shown as the default
	set   func(e *env, v string)
}

var globalFlagTable = []globalFlag{
	{names: []string{"store"}, arg: "DIR", usage: "the store's directory", def: "$BLOCKHASH_STORE or " + DefaultStore,
		set: func(e *env, v string) { e.store = v }},
	{names: []string{"socket"}, arg: "PATH", usage: "the daemon's control socket", def: "$BLOCKHASH_SOCKET or " + daemon.DefaultSocket,
		set: func(e *env, v string) { e.socket = v }},
	{names: []string{"verbose", "v"}, usage: "log at info level",
		set: func(e *env, _ string) { e.level = min(e.level, zerolog.InfoLevel) }},
	{names: []string{"debug"}, usage: "log at debug level",
		set: func(e *env, _ string) { e.level = zerolog.DebugLevel }},
	{names: []string{"log-format"}, arg: "FORMAT", usage: "console (lines for people) or json (one JSON object a line, for log shippers)", def: "console",
		set: func(e *env, v string) { e.logFormat = v }},
	{names: []string{"cpuprofile"}, arg: "FILE", usage: "write a Go CPU profile of the command to FILE",
		set: func(e *env, v string) { e.cpuprofile = v }},
}

func lookupGlobal(name string) *globalFlag {
	for i := range globalFlagTable {
		for _, n := range globalFlagTable[i].names {
			if n == name {
				return &globalFlagTable[i]
			}
		}
	}
	return nil
}

// globalFlags takes the global flags out of args, wherever they stand
// before a "--", and sets them on e; it returns the other arguments in
// their order. A flag is spelled -name, --name, --name=value or
// --name value.
func (e *env) globalFlags(args []string) ([]string, error) {
	rest := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			rest = append(rest, a)
			continue
		}
		name, v, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		g := lookupGlobal(name)
		switch {
		case g == nil:
			rest = append(rest, a)
			continue
		case g.arg == "" && hasValue:
			return nil, fmt.Errorf("%s takes no value", flagName(name))
		case g.arg != "" && !hasValue:
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s needs a %s", a, g.arg)
			}
			i++
			v = args[i]
		}
		g.set(e, v)
	}
	return rest, nil
}

func printGlobalFlags(w io.Writer) {
	for _, g := range globalFlagTable {
		names := make([]string, len(g.names))
		for i, n := range g.names {
			names[i] = flagName(n)
		}
		printFlag(w, strings.Join(names, ", "), g.arg, g.usage, g.def)
	}
}
