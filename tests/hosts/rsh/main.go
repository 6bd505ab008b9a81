package main

import (
	"fmt"
	"log"
	"os"
)

const usage = `usage: rsh serve ADDR
       rsh HOST[:PORT] CMD [ARGS...]`

func main() {
	os.Exit(mainStatus(os.Args[1:]))
}

func mainStatus(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	if args[0] == "serve" {
		if len(args) != 2 {
			fmt.Fprintln(os.Stderr, usage)
			return 2
		}
		ln, err := listen(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "rsh:", err)
			return 1
		}
		s := &server{log: log.New(os.Stderr, "rsh: ", log.LstdFlags), grace: defaultGrace}
		fmt.Fprintln(os.Stderr, "rsh: listening on", ln.Addr())
		if err := s.serve(ln); err != nil {
			fmt.Fprintln(os.Stderr, "rsh:", err)
		}
		return 1
	}
	c := &client{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	status, err := c.run(args[0], args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "rsh: %s: %v\n", args[0], err)
	}
	return status
}
