//go:build ignore

// distinct prints how many distinct non-zero 4 KiB blocks the files
// named on its command line hold together (tests/ceph/hosts: what a pool
// holding each block once stores). go run tests/ceph/distinct.go FILE...
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

func main() {
	seen := map[[32]byte]bool{}
	zero := sha256.Sum256(make([]byte, 4096))
	buf := make([]byte, 4096)
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			n, err := io.ReadFull(f, buf)
			if n > 0 {
				clear(buf[n:])
				if s := sha256.Sum256(buf); s != zero {
					seen[s] = true
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		f.Close()
	}
	fmt.Println(len(seen))
}
