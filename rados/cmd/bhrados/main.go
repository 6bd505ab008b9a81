//go:build rados

// Command bhrados is a RADOS host for the multi-host tests
// (tests/ceph/partition): run inside a network namespace, it holds a
// device's lease and writes under it, or takes a device over by fencing
// its holder, through package rados. Not a product command.
//
//	bhrados hold -dev NAME -cookie HOST [-for 30s]
//	    take the lease, then every 50 ms write record N under it
//	    (Lease.Write at offset 16*N) and a block into a pack of host 1,
//	    printing "ok N" / "pack ok N", or "refused|fenced N: ERR" /
//	    "pack refused|fenced N: ERR"
//	bhrados take -dev NAME -cookie HOST
//	    take the lease; if another holds it, fence that holder (blocklist,
//	    break) first; then write "taken" at offset 0 under the lease
//	bhrados dump -dev NAME
//	    print the records in the device's object, one per line
//	bhrados packs
//	    print "PACK BLOCKS" for each pack of host 1 in the namespace
//
// Common flags: -conf FILE (ceph.conf), -pool NAME (default bh), -ns
// NAMESPACE, -timeout D (RADOS operations, default 5s).
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"blockhash/rados"
)

const recSize = 16

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bhrados hold|take|dump [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	conf := fs.String("conf", "", "ceph.conf")
	pool := fs.String("pool", "bh", "pool")
	ns := fs.String("ns", "", "RADOS namespace")
	dev := fs.String("dev", "", "device name")
	cookie := fs.String("cookie", "", "this host's lease cookie")
	dur := fs.Duration("for", 30*time.Second, "hold: how long to write")
	timeout := fs.Duration("timeout", 5*time.Second, "RADOS operation timeout")
	_ = fs.Parse(os.Args[2:])
	if *dev == "" {
		fail(errors.New("-dev is required"))
	}
	c, err := rados.Connect(rados.Config{ConfFile: *conf, Pool: *pool, Namespace: *ns, Timeout: *timeout})
	if err != nil {
		fail(err)
	}
	defer c.Close()
	oid := "bh.dev." + *dev
	switch cmd {
	case "hold":
		err = hold(c, c.Lease(oid, *cookie), *dur)
	case "take":
		err = take(c.Lease(oid, *cookie))
	case "dump":
		err = dump(c, oid)
	case "packs":
		err = packs(c)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bhrados:", err)
	os.Exit(1)
}

func record(s string) []byte {
	b := make([]byte, recSize)
	copy(b, s)
	b[recSize-1] = '\n'
	return b
}

// hold writes, each round, a record under the lease and a block into a
// pack of host 1 (pack writes carry no lease: only the blocklist stops
// them). A failed pack write opens a new pack next time.
func hold(c *rados.Conn, l *rados.Lease, d time.Duration) error {
	if err := l.Acquire(); err != nil {
		return err
	}
	fmt.Println("held")
	var p *rados.PackWriter
	var seq uint64 = 1
	end := time.Now().Add(d)
	for n := 1; time.Now().Before(end); n++ {
		if err := l.Write(record(fmt.Sprintf("w %d", n)), uint64(n)*recSize); err != nil {
			fmt.Printf("%s %d: %v\n", refusal(err), n, err)
		} else {
			fmt.Printf("ok %d\n", n)
		}
		err := func() error {
			if p == nil || p.Free() == 0 {
				np, err := c.NewPack(1, seq)
				if err != nil {
					return err
				}
				p, seq = np, np.ID().Seq+1
			}
			key := make([]byte, rados.KeySize)
			copy(key, fmt.Sprintf("block %d", n))
			_, err := p.Append([][]byte{key}, make([]byte, rados.BlockSize))
			if err != nil {
				p = nil
			}
			return err
		}()
		if err != nil {
			fmt.Printf("pack %s %d: %v\n", refusal(err), n, err)
		} else {
			fmt.Printf("pack ok %d\n", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func refusal(err error) string {
	if errors.Is(err, rados.ErrFenced) {
		return "fenced"
	}
	return "refused"
}

func take(l *rados.Lease) error {
	start := time.Now()
	err := l.Acquire()
	if errors.Is(err, rados.ErrLeaseHeld) {
		hs, herr := l.Holders()
		if herr != nil {
			return herr
		}
		for _, h := range hs {
			fmt.Printf("fencing %s (%s, cookie %s)\n", h.Client, h.Addr, h.Cookie)
			if err = l.Fence(h); err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	}
	if err := l.Write(record("taken"), 0); err != nil {
		return err
	}
	fmt.Printf("taken in %v\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func dump(c *rados.Conn, oid string) error {
	b, err := c.ReadAll(oid)
	if err != nil {
		return err
	}
	for off := 0; off+recSize <= len(b); off += recSize {
		r := strings.TrimRight(string(bytes.TrimRight(b[off:off+recSize], "\n")), "\x00")
		if r != "" {
			fmt.Println(r)
		}
	}
	return nil
}

func packs(c *rados.Conn) error {
	for seq := uint64(1); ; seq++ {
		id := rados.PackID{Host: 1, Seq: seq}
		st, err := c.ReadPackState(id)
		if err != nil {
			return nil // the first missing pack ends the list
		}
		fmt.Println(id, len(st.Keys))
	}
}
