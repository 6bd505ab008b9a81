//go:build rados

package pool

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"blockhash/rados"
)

// List lists the pool's devices with the host that holds each.
func (p *Pool) List() ([]Info, error) { return list(p.c) }

func list(c *rados.Conn) ([]Info, error) {
	objs, err := c.Objects(devPrefix)
	if err != nil {
		return nil, err
	}
	hosts, err := readHosts(c)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, o := range objs {
		name := strings.TrimPrefix(o, devPrefix)
		h, err := readHeader(c, name)
		if errors.Is(err, ErrNotFound) || errors.Is(err, errEmptyHeader) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		i := Info{Name: name, Size: h.Size}
		hs, err := c.Lease(o, "").Holders()
		if err != nil {
			return nil, err
		}
		if len(hs) > 0 {
			i.Holder = hs[0].Cookie
			if id, ok := hostOfCookie(hs[0].Cookie); ok {
				if st, ok := hosts[id]; ok {
					i.Holder, i.HolderState = st.Name, st.State
				}
			}
		}
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// Delete deletes a device: it takes the lease (from whoever holds it),
// removes its map shards, then its header. A crash between the two
// leaves the device with fewer blocks; Delete again finishes.
func (p *Pool) Delete(name string) error {
	d, err := p.Open(name)
	if err != nil {
		return err
	}
	d.state.Lock()
	if _, err := d.takeLocked(false); err != nil {
		d.state.Unlock()
		return err
	}
	d.flushMu.Lock()
	for s := range d.nShards() {
		if err := p.c.Delete(mapObject(d.hdr.ID, s)); err != nil {
			d.flushMu.Unlock()
			d.state.Unlock()
			return err
		}
	}
	d.flushMu.Unlock()
	d.dropMap()
	d.shards = nil
	d.held = false
	d.closed = true
	err = p.c.Delete(devObject(name))
	d.state.Unlock()
	_ = d.watch.Stop() // its object is gone: the unwatch may say so
	p.mu.Lock()
	delete(p.devs, name)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	p.log.Info().Str("device", name).Msg("device deleted")
	return nil
}

// FenceHost blocklists a host that is gone (its recorded client
// address) and records it fenced, so that GC rounds stop waiting for it.
// Its devices' leases stay held by the fenced instance until taken.
func (p *Pool) FenceHost(name string) error {
	hs, err := p.Hosts()
	if err != nil {
		return err
	}
	for id, h := range hs {
		if h.Name != name {
			continue
		}
		if id == p.host {
			return fmt.Errorf("%w: host %s is this host", ErrInvalid, name)
		}
		if err := p.c.Blocklist(h.Addr); err != nil {
			return err
		}
		p.markFenced(p.cookieOf(id))
		p.log.Warn().Str("fenced_host", name).Str("addr", h.Addr).Msg("host fenced")
		return nil
	}
	return fmt.Errorf("%w: no host %q in the pool", ErrInvalid, name)
}

func (p *Pool) cookieOf(id uint16) string { return fmt.Sprintf("host.%d", id) }

// ListDevices lists a pool's devices and their holders, joining nothing.
func ListDevices(c *rados.Conn) ([]Info, error) { return list(c) }

// Destroy removes every object of the store cfg names (its namespace of
// the pool): for throw-away stores (bench, tests). No host may use it.
func Destroy(cfg rados.Config) error {
	c, err := rados.Connect(cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	objs, err := c.Objects("")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := c.Delete(o); err != nil {
			return err
		}
	}
	return nil
}
