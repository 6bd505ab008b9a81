//go:build rados

package pool

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"blockhash/rados"
)

// Options configure a Pool.
type Options struct {
	Config rados.Config
	// Host names this host in the pool (default: the machine's host name).
	Host string
	// HandoverTimeout bounds one hand-over request (default 5 s).
	HandoverTimeout time.Duration
	// TakeTimeout bounds how long taking a device keeps asking a holder
	// that watches but does not answer (default: 3 watch timeouts).
	TakeTimeout time.Duration
	// MergeEvery is how often queued index inserts are sent and lost
	// races merged (default 500 ms).
	MergeEvery time.Duration
	Logger     zerolog.Logger
}

// DefaultWatchTimeout is the watch timeout a pool's hosts use: a host
// that stops answering is taken for dead this long after its last
// contact (and fenced before its devices are taken).
const DefaultWatchTimeout = 5 * time.Second

// DefaultIndexShards is init's index shard count: 64 shards of at most
// 150,000 keys each are 9.8 M unique blocks (37 GiB); give more to init
// for a bigger pool (design.md section 2).
const DefaultIndexShards = 64

// Pool is one host's handle on a store in a RADOS pool: its block
// placement, its view of the shared index, its references, and the
// devices it has opened. It is safe for concurrent use.
type Pool struct {
	o      Options
	log    zerolog.Logger
	c      *rados.Conn
	hdr    StoreHeader
	host   uint16
	blocks *rados.Blocks
	x      *rados.Index
	q      *rados.InsertQueue
	refs   *rados.Refs
	rounds *rados.RoundServer

	cache *keyCache
	puts  *putBatcher

	// mergeMu serialises merges: one that found the queue empty while
	// another had its entries in flight would return before their lost
	// races were re-pointed (and a device let go after it would keep
	// its own copies for good).
	mergeMu sync.Mutex

	// mu guards devs and closed.
	mu     sync.Mutex
	devs   map[string]*Device
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// Init creates a store in the pool cfg names: its header, by exclusive
// create. A store there already is ErrExists, unchanged.
func Init(cfg rados.Config, shards uint32) (StoreHeader, error) {
	if shards == 0 {
		shards = DefaultIndexShards
	}
	if shards&(shards-1) != 0 || shards > 1<<16 {
		return StoreHeader{}, fmt.Errorf("%w: index shards %d (a power of two up to 65536)", ErrInvalid, shards)
	}
	c, err := rados.Connect(cfg)
	if err != nil {
		return StoreHeader{}, err
	}
	defer c.Close()
	var u [16]byte
	rand.Read(u[:])
	h := StoreHeader{Format: formatPool, BlockSize: BlockSize, IndexShards: shards, Hash: "sha256", UUID: hex.EncodeToString(u[:])}
	if err := c.CreateObject(storeObject, h.encode()); err != nil {
		if errors.Is(err, rados.ErrExists) {
			return h, fmt.Errorf("%w: a Blockhash store is in pool %q already", ErrExists, cfg.Pool)
		}
		return h, err
	}
	return h, nil
}

// Open joins the store as host o.Host: registers the host, seals the
// pack its last run left open, answers GC rounds and starts merging
// queued index inserts.
func Open(o Options) (*Pool, error) {
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.HandoverTimeout <= 0 {
		o.HandoverTimeout = 5 * time.Second
	}
	if o.Config.WatchTimeout <= 0 {
		o.Config.WatchTimeout = DefaultWatchTimeout
	}
	if o.TakeTimeout <= 0 {
		o.TakeTimeout = 3 * o.Config.WatchTimeout
	}
	if o.MergeEvery <= 0 {
		o.MergeEvery = 500 * time.Millisecond
	}
	c, err := rados.Connect(o.Config)
	if err != nil {
		return nil, err
	}
	p := &Pool{o: o, log: o.Logger.With().Str("host", o.Host).Logger(), c: c, devs: map[string]*Device{},
		stop: make(chan struct{}), cache: newKeyCache(1 << 20)}
	if err := p.open(); err != nil {
		c.Close()
		return nil, err
	}
	p.wg.Add(1)
	go p.mergeLoop()
	return p, nil
}

func (p *Pool) open() error {
	b, err := p.c.Read(storeObject)
	if errors.Is(err, rados.ErrNoObject) {
		return fmt.Errorf("%w %q (blockhash init --rados %s)", ErrNoStore, p.o.Config.Pool, p.o.Config.Pool)
	}
	if err != nil {
		return err
	}
	if p.hdr, err = decodeStoreHeader(b); err != nil {
		return err
	}
	if p.host, err = p.c.RegisterHost(p.o.Host); err != nil {
		return err
	}
	if err := p.setState("live"); err != nil {
		return err
	}
	if p.blocks, err = p.c.OpenBlocks(p.host); err != nil {
		return err
	}
	p.puts = &putBatcher{blocks: p.blocks}
	if p.x, err = p.c.NewIndex(p.hdr.IndexShards); err != nil {
		return err
	}
	p.q = p.x.NewInsertQueue()
	p.refs = p.c.NewRefs(p.host)
	p.c.SetLiveExtra(p.mapsLive)
	if p.rounds, err = p.c.ServeRounds(p.host, p.answer); err != nil {
		return err
	}
	return nil
}

// HostID is this host's id in the pool.
func (p *Pool) HostID() uint16 { return p.host }

// HostName is this host's name in the pool.
func (p *Pool) HostName() string { return p.o.Host }

// Header is the store's header.
func (p *Pool) Header() StoreHeader { return p.hdr }

// setState records this host's state and client address in bh.hoststate.
func (p *Pool) setState(state string) error {
	addr, err := p.c.Addr()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(HostState{Name: p.o.Host, State: state, Addr: addr})
	return p.c.SetOmap(hostsState, map[string][]byte{strconv.Itoa(int(p.host)): b})
}

// Hosts reads every host's recorded state, by id.
func (p *Pool) Hosts() (map[uint16]HostState, error) { return readHosts(p.c) }

func readHosts(c *rados.Conn) (map[uint16]HostState, error) {
	m, err := c.OmapAll(hostsState, "")
	if err != nil {
		return nil, err
	}
	out := map[uint16]HostState{}
	for k, v := range m {
		id, err := strconv.ParseUint(k, 10, 16)
		var h HostState
		if err != nil || json.Unmarshal(v, &h) != nil {
			return nil, fmt.Errorf("%w: %s entry %q", ErrCorrupt, hostsState, k)
		}
		out[uint16(id)] = h
	}
	return out, nil
}

// liveHosts are the hosts a GC round waits for: every host not stopped
// cleanly and not fenced.
func (p *Pool) liveHosts() ([]uint16, error) {
	hs, err := p.Hosts()
	if err != nil {
		return nil, err
	}
	var out []uint16
	for id, h := range hs {
		if h.State == "live" {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// markFenced records that host (found holding a lease with cookie) was
// fenced: GC stops waiting for its acknowledgements. Its durable state is
// all in device maps, which GC reads.
func (p *Pool) markFenced(cookie string) {
	id, ok := hostOfCookie(cookie)
	if !ok {
		return
	}
	hs, err := p.Hosts()
	if err != nil {
		return
	}
	h := hs[id]
	h.State = "fenced"
	b, _ := json.Marshal(h)
	if err := p.c.SetOmap(hostsState, map[string][]byte{strconv.Itoa(int(id)): b}); err != nil {
		p.log.Error().Err(err).Uint16("fenced_host", id).Msg("recording a fenced host")
	}
}

func (p *Pool) cookie() string { return p.cookieOf(p.host) }

func hostOfCookie(cookie string) (uint16, bool) {
	s, ok := strings.CutPrefix(cookie, "host.")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 16)
	return uint16(id), err == nil && id > 0
}

// answer is this host's answer to GC round r: references re-pointed
// along compaction's forwards (in the maps of the devices it holds too),
// then published.
func (p *Pool) answer(r uint64) error {
	if err := p.followForwards(); err != nil {
		return err
	}
	return p.refs.Publish(r)
}

// followForwards re-points this host's references, the maps it holds
// and its key cache along compaction's forwards.
func (p *Pool) followForwards() error {
	return p.refs.Exclusive(func() error {
		moved, err := p.refs.Remap()
		if err != nil || len(moved) == 0 {
			return err
		}
		mv := make(map[uint64]uint64, len(moved))
		for o, n := range moved {
			mv[uint64(o)] = uint64(n)
		}
		for _, d := range p.devices() {
			d.remap(mv)
		}
		p.cache.remap(mv)
		return nil
	})
}

// followForwardsIdle makes the maps of the devices no host holds follow
// compaction's forwards: this host takes each, re-points its map and
// lets it go (flushed). Without it their maps kept naming the old packs,
// which never died, and the pool kept both copies for good.
func (p *Pool) followForwardsIdle() error {
	all, err := p.List()
	if err != nil {
		return err
	}
	var taken []*Device
	var opened []bool
	letGo := func() error {
		var first error
		for i, d := range taken {
			var err error
			if opened[i] {
				err = d.Close()
			} else {
				err = d.Release()
			}
			if err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	for _, i := range all {
		if i.Holder != "" {
			continue
		}
		p.mu.Lock()
		_, open := p.devs[i.Name]
		p.mu.Unlock()
		d, err := p.Open(i.Name)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err == nil {
			var ok bool
			if ok, err = d.TakeIfFree(); err == nil && !ok {
				if !open {
					err = d.Close()
				}
				continue // another host took it meanwhile: it follows
			}
		}
		if err != nil {
			return errors.Join(err, letGo())
		}
		taken, opened = append(taken, d), append(opened, !open)
	}
	if len(taken) == 0 {
		return nil
	}
	return errors.Join(p.followForwards(), letGo())
}

func (p *Pool) devices() []*Device {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Device, 0, len(p.devs))
	for _, d := range p.devs {
		out = append(out, d)
	}
	return out
}

// mergeLoop sends queued index inserts and merges the races lost, every
// MergeEvery.
func (p *Pool) mergeLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.o.MergeEvery)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if _, err := p.Merge(); err != nil {
				p.log.Warn().Err(err).Msg("index inserts (retried)")
			}
		}
	}
}

// Merge sends every queued index insert now and re-points this host's
// maps from its own copies of contents another host indexed first to
// that host's copy. It returns how many map entries it re-pointed.
func (p *Pool) Merge() (int, error) {
	p.mergeMu.Lock()
	defer p.mergeMu.Unlock()
	n := 0
	err := p.refs.Do(func() error {
		lost, err := p.q.FlushIf(1, func(l rados.Loc) bool { return p.refs.Held(l) })
		if err != nil || len(lost) == 0 {
			return err
		}
		to := make(map[uint64]uint64, len(lost))
		for _, l := range lost {
			to[uint64(l.Mine)] = uint64(l.Winner)
			var k [KeySize]byte
			copy(k[:], l.Key)
			p.cache.put(k, uint64(l.Winner))
		}
		for _, d := range p.devices() {
			n += d.repoint(to, func(l uint64) { p.refs.Add(rados.Loc(l)) })
		}
		return nil
	})
	return n, err
}

// dropRef implements refCounter.
func (p *Pool) dropRef(l uint64) {
	if err := p.refs.Drop(rados.Loc(l)); err != nil {
		p.log.Error().Err(err).Msg("reference count")
	}
}

// mapsLive is every location a device map in the pool names: GC counts
// them live whoever holds the device (or nobody).
func (p *Pool) mapsLive() (map[rados.Loc]bool, error) {
	live := map[rados.Loc]bool{}
	err := eachMapEntry(p.c, func(_ string, _ uint64, e Entry) error {
		live[rados.Loc(e.Loc)] = true
		return nil
	})
	return live, err
}

// eachMapEntry calls f for every entry of every map shard in the pool.
func eachMapEntry(c *rados.Conn, f func(shard string, block uint64, e Entry) error) error {
	shards, err := c.Objects(mapPrefix)
	if err != nil {
		return err
	}
	for _, s := range shards {
		m, err := c.OmapAll(s, "")
		if err != nil {
			return err
		}
		for k, v := range m {
			b, e, err := decodeEntry(k, v)
			if err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
			if err := f(s, b, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// GC runs one garbage collection over the pool, led by this host:
// collect, compact packs at most maxLive live (0: no compaction), collect
// again. Hosts that do not answer a round stop it (rados.ErrUnacked):
// fence them first (taking their devices does).
func (p *Pool) GC(maxLive float64) (GCStats, error) {
	var st GCStats
	hosts, err := p.liveHosts()
	if err != nil {
		return st, err
	}
	timeout := 2 * p.o.Config.WatchTimeout
	add := func(g rados.GCStats) {
		st.Candidates += g.Candidates
		st.Resurrected += g.Resurrected
		st.Dead += g.Dead
		st.PacksDeleted += g.PacksDeleted
	}
	g, err := p.c.Collect(p.x, hosts, timeout)
	add(g)
	if err != nil || maxLive <= 0 {
		return st, err
	}
	// The leader's own round answer needs its writers' pin holds to end,
	// and they may wait for its packs: the packs are locked per copy
	// only, not across Compact's rounds (that deadlocked until the
	// round timed out).
	cs, err := p.c.Compact(p.x, hosts, p.blocks.Placement(), maxLive, timeout)
	st.Compacted, st.Copied = cs.Packs, cs.Copied
	if err != nil || cs.Packs == 0 {
		return st, err
	}
	// the old packs die once every host followed the forwards, and
	// every map no host holds
	if err := p.followForwardsIdle(); err != nil {
		return st, err
	}
	g, err = p.c.Collect(p.x, hosts, timeout)
	add(g)
	return st, err
}

// Close releases every device this host holds (flushing each), seals
// its open pack, stops answering rounds and records it as stopped.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	devs := make([]*Device, 0, len(p.devs))
	for _, d := range p.devs {
		devs = append(devs, d)
	}
	p.mu.Unlock()
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, d := range devs {
		keep(d.Close())
	}
	close(p.stop)
	p.wg.Wait()
	_, err := p.Merge()
	keep(err)
	keep(p.rounds.Stop())
	keep(p.blocks.Close())
	if first == nil {
		keep(p.setState("stopped"))
	}
	p.c.Close()
	return first
}
