//go:build rados

package rados

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Config says which cluster, pool and namespace a Conn uses.
type Config struct {
	ConfFile  string        // ceph.conf; empty: librados' default search
	User      string        // client id ("admin" when empty)
	Pool      string        // pool name
	Namespace string        // RADOS namespace ("" is the pool's default)
	Timeout   time.Duration // for monitor and OSD operations (default 30 s)
	// WatchTimeout is how long the OSDs keep a watch of this client's
	// (a device lease holder's hand-over watch) without hearing from it;
	// zero: librados' default (30 s). A holder whose watch expired is
	// taken for dead by Lease.Take and fenced.
	WatchTimeout time.Duration
}

// Conn is a connection to one pool and namespace. It is safe for
// concurrent use.
type Conn struct {
	// liveExtra, when set (SetLiveExtra), adds locations to every GC
	// round's live set: the references of layers above that the hosts'
	// published lists do not carry (device maps read from the pool).
	liveExtra func() (map[Loc]bool, error)
	conn      *rados.Conn
	io        *rados.IOContext
	cfg       Config
	close     sync.Once // librados' handles are freed once, however often Close is called
}

// Connect opens a connection. An unreachable cluster is ErrNoCluster.
func Connect(cfg Config) (*Conn, error) {
	if cfg.Pool == "" {
		return nil, fmt.Errorf("%w: no pool named", ErrArg)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	var conn *rados.Conn
	var err error
	if cfg.User != "" {
		conn, err = rados.NewConnWithUser(cfg.User)
	} else {
		conn, err = rados.NewConn()
	}
	if err != nil {
		return nil, fmt.Errorf("rados: %w", err)
	}
	if cfg.ConfFile != "" {
		err = conn.ReadConfigFile(cfg.ConfFile)
	} else {
		err = conn.ReadDefaultConfigFile()
	}
	if err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("%w: reading %q: %w", ErrNoCluster, cfg.ConfFile, err)
	}
	secs := strconv.Itoa(int(max(1, cfg.Timeout/time.Second)))
	for _, o := range []string{"client_mount_timeout", "rados_mon_op_timeout", "rados_osd_op_timeout"} {
		if err := conn.SetConfigOption(o, secs); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rados: setting %s: %w", o, err)
		}
	}
	// librados pings each watch once per objecter tick (5 s by
	// default); an OSD drops a watch not pinged within its timeout, so a
	// live holder's hand-over watch would expire and the next Take would
	// fence it. Tick at a third of the watch timeout.
	if cfg.WatchTimeout > 0 {
		tick := strconv.FormatFloat(max(0.1, cfg.WatchTimeout.Seconds()/3), 'f', 3, 64)
		if err := conn.SetConfigOption("objecter_tick_interval", tick); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("rados: setting objecter_tick_interval: %w", err)
		}
	}
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("%w: %w", ErrNoCluster, err)
	}
	io, err := conn.OpenIOContext(cfg.Pool)
	if err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("rados: pool %q: %w", cfg.Pool, err)
	}
	io.SetNamespace(cfg.Namespace)
	return &Conn{conn: conn, io: io, cfg: cfg}, nil
}

// Close ends the connection. Closing again does nothing (go-ceph's
// IOContext.Destroy would free librados' handle twice).
func (c *Conn) Close() {
	c.close.Do(func() {
		c.io.Destroy()
		c.conn.Shutdown()
	})
}

// Addr is this client instance's address, the one a fence blocklists.
func (c *Conn) Addr() (string, error) {
	a, err := c.conn.GetAddrs()
	if err != nil {
		return "", fmt.Errorf("rados: client address: %w", err)
	}
	return a, nil
}

// Blocklist asks the monitors to refuse every operation of the client
// instance at addr (as ListLockers or Addr gives it), then waits until
// this client has the OSD map that says so: its operations sent after
// Blocklist returns are ordered after the blocklist on every OSD.
func (c *Conn) Blocklist(addr string) error {
	cmd, err := json.Marshal(map[string]string{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr})
	if err != nil {
		return err
	}
	if _, status, err := c.conn.MonCommand(cmd); err != nil {
		return fmt.Errorf("rados: blocklist %s: %w (%s)", addr, err, status)
	}
	if err := c.conn.WaitForLatestOSDMap(); err != nil {
		return fmt.Errorf("rados: waiting for the OSD map after blocklisting %s: %w", addr, err)
	}
	return nil
}

// Delete removes an object (absent is not an error).
func (c *Conn) Delete(oid string) error {
	if err := c.io.Delete(oid); err != nil && errnoOf(err) != -errENOENT {
		return c.wrap("delete "+oid, err)
	}
	return nil
}

// errno values librados returns (negated).
const (
	errENOENT     = 2
	errEBUSY      = 16
	errEEXIST     = 17
	errENODATA    = 61
	errEBLOCKLIST = 108 // ESHUTDOWN: EBLOCKLISTED
	errETIMEDOUT  = 110
	errECANCELED  = 125
)

// errnoOf returns the negative errno of a librados error, or 0. A
// failed operation's *OperationError has no Unwrap: its OpError holds the
// code.
func errnoOf(err error) int {
	var oe rados.OperationError
	if errors.As(err, &oe) {
		err = oe.OpError
	} else {
		var poe *rados.OperationError
		if errors.As(err, &poe) {
			err = poe.OpError
		}
	}
	var coded interface{ ErrorCode() int }
	if errors.As(err, &coded) {
		return coded.ErrorCode()
	}
	return 0
}

// wrap says what failed and maps a blocklisted client to ErrFenced.
func (c *Conn) wrap(what string, err error) error {
	if errnoOf(err) == -errEBLOCKLIST {
		return fmt.Errorf("%w: %s: %w", ErrFenced, what, err)
	}
	return fmt.Errorf("rados: %s: %w", what, err)
}

// ReadAll reads a whole object.
func (c *Conn) ReadAll(oid string) ([]byte, error) {
	st, err := c.io.Stat(oid)
	if err != nil {
		return nil, c.wrap("stat "+oid, err)
	}
	b := make([]byte, st.Size)
	n, err := c.io.Read(oid, b, 0)
	if err != nil {
		return nil, c.wrap("read "+oid, err)
	}
	return b[:n], nil
}
