package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// maxConns bounds the requests handled at once.
const maxConns = 16

type server struct {
	ln   net.Listener
	path string
	wg   sync.WaitGroup
	once sync.Once
}

// Listen opens the control socket (root only). It fails with ErrRunning if
// another daemon answers there.
func (d *Daemon) Listen() error {
	s, err := listen(d.o.Socket)
	if err != nil {
		return err
	}
	d.srv = s
	return nil
}

// listen opens the control socket at path.
func listen(path string) (*server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("daemon: socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: %s answers", ErrRunning, path)
	}
	os.Remove(path) // a stale socket of a daemon that died
	old := syscall.Umask(0o077)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("daemon: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return &server{ln: ln, path: path}, nil
}

// Serve answers requests until ctx is done.
func (d *Daemon) Serve(ctx context.Context) error {
	return d.srv.serve(ctx, d.handle, func() {
		d.stopScrub()    // scrub.go: a running scrub ends early, so shutdown does not wait for it
		d.closeStreams() // importexport.go: likewise imports and exports
	})
}

// serve answers connections with handle until ctx is done; stopping runs
// first when it is (to end long requests).
func (s *server) serve(ctx context.Context, handle func(net.Conn), stopping func()) error {
	if s == nil {
		return errors.New("daemon: Serve before Listen")
	}
	go func() {
		<-ctx.Done()
		stopping()
		s.close()
	}()
	sem := make(chan struct{}, maxConns)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return nil
			}
			return fmt.Errorf("daemon: accept: %w", err)
		}
		sem <- struct{}{}
		s.wg.Go(func() {
			defer func() { <-sem }()
			handle(c)
		})
	}
}

func (s *server) close() {
	s.once.Do(func() {
		s.ln.Close()
		os.Remove(s.path)
	})
}

func (d *Daemon) handle(c net.Conn) {
	defer c.Close()
	r, ok := readRequest(c)
	if !ok {
		return
	}
	if r.Op == "send" || r.Op == "receive" {
		d.streamConn(c, r) // replica.go
		return
	}
	switch r.Op {
	case "export":
		d.exportConn(c, r) // importexport.go
		return
	case "import":
		d.importConn(c, r)
		return
	}
	var resp Response
	if r.Op == "scrub" {
		resp = d.scrubConn(c, r) // scrub.go: stops when the client goes away
	} else {
		resp = d.do(r)
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	json.NewEncoder(c).Encode(resp)
}

func (d *Daemon) do(r Request) Response {
	var resp Response
	var err error
	switch r.Op {
	case "ping":
	case "add":
		var i DeviceInfo
		if i, err = d.Add(r); err == nil {
			resp.Devices = []DeviceInfo{i}
		}
	case "del":
		resp.Devices, err = d.Del(r)
	case "recover":
		var i DeviceInfo
		if i, err = d.Recover(r.ID); err == nil {
			resp.Devices = []DeviceInfo{i}
		}
	case "list":
		resp.Devices = d.List()
	case "scrub":
		resp.Scrub, err = d.Scrub(context.Background(), r)
	case "snapshot":
		err = d.Snapshot(r)
	case "clone":
		err = d.Clone(r)
	case "rollback":
		err = d.Rollback(r)
	case "delete":
		err = d.DeleteVolume(r)
	case "diff":
		resp.Ranges, err = d.Diff(r)
	case "create":
		resp.Size, err = d.Create(r)
	case "fsck":
		resp.Fsck, err = d.Fsck(r)
	case "pause":
		err = d.Pause(r.Name)
	case "resume":
		err = d.Resume(r.Name)
	case "invalidate":
		err = d.Invalidate(r.Name)
	case "stats":
		st, e := d.Stats()
		resp.Stats, err = &st, e
		resp.Devices = d.List()
	default:
		err = fmt.Errorf("%w: unknown op %q", ErrInvalid, r.Op)
	}
	if err != nil {
		d.log.Warn().Str("op", r.Op).Err(err).Msg("request failed")
		resp.Error = err.Error()
	} else if r.Op != "list" && r.Op != "stats" && r.Op != "ping" && r.Op != "diff" && r.Op != "fsck" {
		ev := d.log.Info().Str("op", r.Op).Str("name", r.Name).Int("id", r.ID)
		if r.Snap != "" || r.Target != "" {
			ev = ev.Str("snap", r.Snap).Str("target", r.Target)
		}
		ev.Msg("request done")
	}
	return resp
}

// readRequest reads one request from c (10 s, 64 KiB at most); a
// malformed one is answered with ErrInvalid and ok is false.
func readRequest(c net.Conn) (r Request, ok bool) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := json.NewDecoder(io.LimitReader(c, 1<<16)).Decode(&r); err != nil {
		json.NewEncoder(c).Encode(Response{Error: fmt.Sprintf("%v: %v", ErrInvalid, err)})
		return r, false
	}
	return r, true
}
