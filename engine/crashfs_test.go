package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"blockhash/blockstore"
	"blockhash/index"
	"blockhash/vfs"
)

// The power-cut property test runs random device operations on a store
// whose files live on a vfs.CrashFS, cuts the power after a random number
// of file operations, reopens the store on what a power cut leaves
// (unsynced data dropped, the last unsynced write of a file torn at a
// sector boundary; directory entries not synced undone) and checks it
// against a reference model: every device must read as the model after some
// prefix of the operations that includes every acknowledged flush (a commit
// holds whole requests in order), and fsck must find nothing wrong. Half
// the time a second power cut hits while the store reopens (journal replay).
// The store then goes on from the recovered state, so one run chains many
// crashes (50 per store, then a fresh one).
//
// Environment: BLOCKHASH_POWERCUT_CRASHES (default 1500, 200 with -short;
// make soak runs more), BLOCKHASH_POWERCUT_SEED (rerun a failure),
// BLOCKHASH_POWERCUT_MODE (tear, prefix or drop: one crash mode only),
// BLOCKHASH_POWERCUT_EIO=0 (power cuts only, no injected I/O errors or
// full disk).

const (
	propDir     = "/store"
	propDevSize = 96 << 10
	propMaxDevs = 3
	propMaxVols = 6        // devices and snapshots
	propReserve = 64 << 10 // a small reserve: crash images copy every file
)

type propOp struct {
	// 'W' write, 'D' discard, 'F' flush, 'C' create, 'X' delete (a
	// device with its snapshots, or a snapshot), 'S' snapshot dev as dst,
	// 'K' clone dev (a device or snapshot) as dst, 'R' roll dev back to
	// dst, 'V' receive dev (a device or snapshot) into device dst, made
	// or replaced, with snapshot dst@snap (receive.go), 'G' grow dev by n
	// bytes
	kind  byte
	snap  string
	dev   string
	dst   string
	off   int64
	data  []byte // W
	n     int64  // D
	acked bool
}

// propData is a write's content: 512-byte pieces of a few recurring blocks
// (duplicates, shared across devices) and of unique ones.
func propData(r *rand.Rand, off, n int64) []byte {
	p := make([]byte, n)
	for i := int64(0); i < n; i += SectorSize {
		var src []byte
		if r.IntN(2) == 0 {
			src = block(uint64(r.IntN(5)))
		} else {
			src = block(r.Uint64())
		}
		copy(p[i:i+SectorSize], src[(off+i)%BlockSize:])
	}
	return p
}

// propState is the devices' content after a prefix of the operations.
type propState map[string][]byte

func (s propState) clone() propState {
	c := make(propState, len(s))
	for k, v := range s {
		c[k] = bytes.Clone(v)
	}
	return c
}

func (s propState) apply(op propOp) {
	switch op.kind {
	case 'W':
		copy(s[op.dev][op.off:], op.data)
	case 'D':
		clear(s[op.dev][op.off : op.off+op.n])
	case 'C':
		s[op.dev] = make([]byte, propDevSize)
	case 'X':
		delete(s, op.dev)
		if !strings.Contains(op.dev, "@") {
			for name := range s {
				if strings.HasPrefix(name, op.dev+"@") {
					delete(s, name)
				}
			}
		}
	case 'S', 'K':
		s[op.dst] = bytes.Clone(s[op.dev])
	case 'R':
		s[op.dev] = bytes.Clone(s[op.dst])
	case 'G':
		s[op.dev] = append(s[op.dev], make([]byte, op.n)...)
	case 'V':
		s[op.dst] = bytes.Clone(s[op.dev])
		s[op.dst+"@"+op.snap] = bytes.Clone(s[op.dev])
	}
}

// inDomain reports whether volume name is in a dedup domain of its own.
func inDomain(e *Engine, name string) bool {
	d, err := e.Device(name)
	return err == nil && d.Domain() != ""
}

// barrier reports whether an acknowledged op commits everything before it.
func (op propOp) barrier() bool { return op.acked && strings.ContainsRune("FXSKRVG", rune(op.kind)) }

type propRun struct {
	t        *testing.T
	r        *rand.Rand
	fs       *vfs.CrashFS
	model    propState // as recovered after the last crash
	nextDev  int
	crashes  int
	replays  int      // second crashes that hit a reopen
	ioErrors int      // I/O errors or a full disk injected instead of a power cut
	fulls    int      // of which the disk did fill
	cause    string   // of the last failure
	trace    []string // the file operations since the last reopen (BLOCKHASH_POWERCUT_TRACE=1)
	ops      int
	acked    int
	catalog  int   // acknowledged snapshots, clones, rollbacks and deletes
	matchAge []int // how many operations past the last barrier each crash kept
}

// traced installs the operation trace on the current FS.
func (p *propRun) traced() {
	if os.Getenv("BLOCKHASH_POWERCUT_TRACE") == "" {
		return
	}
	p.fs.SetBeforeOp(func(op vfs.Op) {
		if op.Kind != vfs.OpWrite || !strings.Contains(op.Path, "/index/") {
			p.trace = append(p.trace, fmt.Sprintf("%s %s %d+%d", op.Kind, op.Path, op.Off, op.Len))
		}
	})
}

func (p *propRun) opts() Options {
	return Options{FS: p.fs, CommitChanges: 8, CommitInterval: -1, ReserveBytes: propReserve,
		Index: index.Options{CacheEntries: 256, WriteBufferBytes: 32 << 10, BlockCacheBytes: 1 << 20}}
}

// workload runs random operations until the armed crash stops them (or
// limit operations ran), and returns them.
func (p *propRun) workload(e *Engine, limit int) []propOp {
	var ops []propOp
	live := slices.Sorted(func(yield func(string) bool) {
		for name := range p.model {
			if !yield(name) {
				return
			}
		}
	})
	devices := func() []string {
		return slices.DeleteFunc(slices.Clone(live), func(s string) bool { return strings.Contains(s, "@") })
	}
	snapsOf := func(dev string) []string {
		return slices.DeleteFunc(slices.Clone(live), func(s string) bool { return !strings.HasPrefix(s, dev+"@") })
	}
	for len(ops) < limit {
		var op propOp
		k := p.r.IntN(100)
		devs := devices()
		switch {
		case len(devs) == 0 || (k < 3 && len(devs) < propMaxDevs && len(live) < propMaxVols):
			op = propOp{kind: 'C', dev: fmt.Sprintf("d%d", p.nextDev)}
			p.nextDev++
		case k < 5 && len(live) > 1:
			op = propOp{kind: 'X', dev: live[p.r.IntN(len(live))]}
		case k < 7 && len(live) < propMaxVols:
			dev := devs[p.r.IntN(len(devs))]
			op = propOp{kind: 'S', dev: dev, dst: fmt.Sprintf("%s@s%d", dev, p.nextDev)}
			p.nextDev++
		case k < 8 && len(live) < propMaxVols && len(devs) < propMaxDevs:
			op = propOp{kind: 'K', dev: live[p.r.IntN(len(live))], dst: fmt.Sprintf("d%d", p.nextDev)}
			p.nextDev++
		case k < 9:
			dev := devs[p.r.IntN(len(devs))]
			snaps := snapsOf(dev)
			if len(snaps) == 0 {
				op = propOp{kind: 'F'}
				break
			}
			op = propOp{kind: 'R', dev: dev, dst: snaps[p.r.IntN(len(snaps))]}
		case k < 10 && len(live) < propMaxVols-1:
			// Into a new device, or over an existing one.
			dst := fmt.Sprintf("d%d", p.nextDev)
			if len(devs) >= propMaxDevs || p.r.IntN(2) == 0 {
				dst = devs[p.r.IntN(len(devs))]
			}
			op = propOp{kind: 'V', dev: live[p.r.IntN(len(live))], dst: dst, snap: fmt.Sprintf("r%d", p.nextDev)}
			p.nextDev++
		case k < 11:
			dev := devs[p.r.IntN(len(devs))]
			if len(p.model[dev]) >= 2*propDevSize {
				op = propOp{kind: 'F'}
				break
			}
			op = propOp{kind: 'G', dev: dev, n: int64(p.r.IntN(3)+1) * BlockSize}
		case k < 20:
			op = propOp{kind: 'F'}
		default:
			dev := devs[p.r.IntN(len(devs))]
			off := int64(p.r.IntN(propDevSize/SectorSize)) * SectorSize
			n := min(int64(p.r.IntN(24)+1)*SectorSize, propDevSize-off)
			if k < 30 {
				op = propOp{kind: 'D', dev: dev, off: off, n: n}
			} else {
				op = propOp{kind: 'W', dev: dev, off: off, data: propData(p.r, off, n)}
			}
		}
		var err error
		switch op.kind {
		case 'C':
			// Devices d0, d3, ... are in the default dedup domain, the
			// others in two domains: a domain's secret must survive the
			// cuts with its volumes (fsck checks every block's key).
			var n int
			fmt.Sscanf(op.dev, "d%d", &n)
			_, err = e.CreateDevice(op.dev, propDevSize, CreateOptions{Domain: []string{"", "t1", "t2"}[n%3]})
			if err == nil {
				live = append(live, op.dev)
			}
		case 'X':
			err = e.DeleteDevice(op.dev, DeleteOptions{Recursive: true, Wait: p.r.IntN(2) == 0})
			live = slices.DeleteFunc(live, func(s string) bool { return s == op.dev || strings.HasPrefix(s, op.dev+"@") })
		case 'S':
			dev, snap := SplitName(op.dst)
			if err = e.Snapshot(dev, snap); err == nil {
				live = append(live, op.dst)
			}
		case 'K':
			if err = e.Clone(op.dev, op.dst); err == nil {
				live = append(live, op.dst)
			}
		case 'R':
			_, snap := SplitName(op.dst)
			err = e.Rollback(op.dev, snap)
		case 'V':
			if inDomain(e, op.dev) || inDomain(e, op.dst) {
				// Replication keeps to the default domain: a flush instead.
				op = propOp{kind: 'F'}
				err = e.Flush()
				break
			}
			if err = propReceive(e, op); err == nil {
				if !slices.Contains(live, op.dst) {
					live = append(live, op.dst)
				}
				live = append(live, op.dst+"@"+op.snap)
			}
		case 'G':
			var d *Device
			if d, err = e.Device(op.dev); err == nil {
				err = e.Grow(op.dev, d.Size()+op.n)
			}
		case 'F':
			err = e.Flush()
		case 'W', 'D':
			var d *Device
			d, err = e.Device(op.dev)
			if err == nil && op.kind == 'W' {
				_, err = d.WriteAt(op.data, op.off)
			} else if err == nil {
				err = d.Discard(op.off, op.n)
			}
		}
		op.acked = err == nil
		ops = append(ops, op)
		if err != nil {
			if p.fs.Crashed() == nil && !errors.Is(err, syscall.EIO) && !errors.Is(err, ErrFailed) &&
				!errors.Is(err, blockstore.ErrFull) && !vfs.IsNoSpace(err) {
				p.t.Fatalf("%c %s: %v", op.kind, op.dev, err)
			}
			break
		}
	}
	return ops
}

// propReceive copies volume op.dev into device op.dst through a receive,
// the way the replica receiver does (link what is stored, write the rest).
func propReceive(e *Engine, op propOp) error {
	src, err := e.Device(op.dev)
	if err != nil {
		return err
	}
	st, err := e.BeginReceive(ReceiveSpec{Device: op.dst, Size: src.Size(), Snap: op.snap, GUID: newGUID(), Force: true})
	if err != nil {
		return err
	}
	n := uint64(src.Size() / BlockSize)
	keys := make([]index.Key, n)
	if err := src.Keys(0, keys); err != nil {
		return err
	}
	// Blocks not linked go in scattered batches, as the receiver stores
	// a BLOCKS frame.
	var lbas []uint64
	var bkeys []index.Key
	var data []byte
	flush := func() error {
		if len(lbas) == 0 {
			return nil
		}
		err := st.Write(lbas, data, bkeys)
		lbas, bkeys, data = lbas[:0], bkeys[:0], data[:0]
		return err
	}
	// Links go in ranges of up to 7 blocks (LinkRange, as the receiver
	// links an offer's runs) and, every other range, one at a time (Link,
	// as it links the other blocks of a key whose data arrived).
	linked := make([]bool, n)
	for first, chunk := uint64(0), 0; first < n; chunk++ {
		last := min(first+7, n)
		if chunk%2 == 0 {
			if err := st.LinkRange(first, keys[first:last], linked[first:last]); err != nil {
				return err
			}
		} else {
			for lba := first; lba < last; lba++ {
				ok, err := st.Link(lba, keys[lba])
				if err != nil {
					return err
				}
				linked[lba] = ok
			}
		}
		first = last
	}
	buf := make([]byte, BlockSize)
	for lba, k := range keys {
		if k.IsZero() {
			if err := st.Zero(uint64(lba), 1); err != nil {
				return err
			}
			continue
		}
		if linked[lba] {
			continue
		}
		if _, err := src.ReadAt(buf, int64(lba)*BlockSize); err != nil {
			return err
		}
		lbas, bkeys, data = append(lbas, uint64(lba)), append(bkeys, k), append(data, buf...)
		if len(lbas) == 5 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return st.Finish()
}

// open opens the store; with a second crash armed it may fail once, and
// is opened again on what that crash left.
func (p *propRun) open(secondCrash bool) *Engine {
	if secondCrash {
		p.fs.CrashAfter(int64(p.r.IntN(80)))
		e, err := Open(propDir, p.opts())
		if e != nil {
			e.Close()
		}
		if img := p.fs.Crashed(); img != nil {
			p.fs = img
			p.traced()
			p.trace = append(p.trace, "-- power cut during reopen")
			p.replays++
		} else if err != nil {
			p.t.Fatalf("reopen (crash armed, did not fire): %v", err)
		}
		p.fs.CrashAfter(-1)
	}
	e, err := Open(propDir, p.opts())
	if err != nil {
		p.t.Fatalf("reopen after crash %d (%s): %v\n%s", p.crashes, p.cause, err, strings.Join(p.trace, "\n"))
	}
	return e
}

// check finds the prefix of ops the recovered store shows, at or after the
// last acknowledged barrier (flush or delete), and makes it the model.
func (p *propRun) check(e *Engine, ops []propOp) {
	barrier := -1
	for i, op := range ops {
		if op.barrier() {
			barrier = i
		}
	}
	got := propState{}
	for _, name := range e.Devices() {
		d, err := e.Device(name)
		if err != nil {
			p.t.Fatal(err)
		}
		b := make([]byte, d.Size())
		if _, err := d.ReadAt(b, 0); err != nil {
			p.t.Fatalf("crash %d: read %s: %v", p.crashes, name, err)
		}
		got[name] = b
	}
	state := p.model.clone()
	for _, op := range ops[:barrier+1] {
		state.apply(op)
	}
	matched := -1
	for k := barrier + 1; k <= len(ops); k++ {
		if p.matches(got, state, ops[k:]) {
			matched = k
			break
		}
		if k < len(ops) {
			state.apply(ops[k])
		}
	}
	if matched < 0 {
		p.t.Fatalf("crash %d (%s): the store matches no state at or after the last acknowledged flush (op %d of %d)\n%s",
			p.crashes, p.cause, barrier, len(ops), p.describe(got, ops))
	}
	p.matchAge = append(p.matchAge, matched-barrier-1)
	rep, err := e.Fsck(false)
	if err != nil || !rep.OK() {
		p.t.Fatalf("crash %d (%s): fsck: %v %+v", p.crashes, p.cause, err, rep)
	}
	p.model = got
}

// matches compares the store with state; devices whose creation is among
// the later operations count too: a create is durable when acknowledged,
// and one cut short may or may not have happened.
func (p *propRun) matches(got, state propState, later []propOp) bool {
	want := state.clone()
	maybe := map[string]bool{}
	for _, op := range later {
		if op.kind != 'C' {
			continue
		}
		if op.acked {
			want[op.dev] = make([]byte, propDevSize)
		} else {
			maybe[op.dev] = true
		}
	}
	for name, b := range got {
		w, ok := want[name]
		if !ok && maybe[name] {
			w, ok = make([]byte, propDevSize), true
		}
		if !ok || !bytes.Equal(b, w) {
			return false
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			return false
		}
	}
	return true
}

func (p *propRun) describe(got propState, ops []propOp) string {
	var b bytes.Buffer
	for _, op := range ops {
		fmt.Fprintf(&b, "  %c %s %s off %d len %d acked %v\n", op.kind, op.dev, op.dst, op.off, max(op.n, int64(len(op.data))), op.acked)
	}
	fmt.Fprintf(&b, "  devices after the crash: %v; before: %v", slices.Sorted(mapKeys(got)), slices.Sorted(mapKeys(p.model)))
	if len(p.trace) > 0 {
		fmt.Fprintf(&b, "\n  file operations (LevelDB writes left out):\n    %s", strings.Join(p.trace, "\n    "))
	}
	return b.String()
}

func mapKeys(m propState) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestPowerCutProperty(t *testing.T) {
	crashes := 1500
	if testing.Short() {
		crashes = 200
	}
	if s := os.Getenv("BLOCKHASH_POWERCUT_CRASHES"); s != "" {
		crashes, _ = strconv.Atoi(s)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BLOCKHASH_POWERCUT_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	modes := []vfs.CrashMode{vfs.TearLast, vfs.KeepPrefix, vfs.DropUnsynced}
	if m, ok := map[string]vfs.CrashMode{"tear": vfs.TearLast, "prefix": vfs.KeepPrefix, "drop": vfs.DropUnsynced}[os.Getenv("BLOCKHASH_POWERCUT_MODE")]; ok {
		modes = []vfs.CrashMode{m}
	}
	t.Logf("seed %d (BLOCKHASH_POWERCUT_SEED reruns it)", seed)
	const perStore = 50 // crashes before starting a fresh store
	var total propRun
	for first := 0; first < crashes; first += perStore {
		s := seed + uint64(first)
		p := &propRun{t: t, r: rand.New(rand.NewPCG(s, 9)), fs: vfs.NewCrashFS(s), model: propState{}}
		p.fs.SetMode(modes[(first/perStore)%len(modes)])
		// Every other store verifies blocks byte for byte before sharing.
		verify := (first/perStore)%2 == 1
		if err := Create(propDir, Options{FS: p.fs, ExtentSize: 16 * BlockSize, ReserveBytes: propReserve, Verify: verify}); err != nil {
			t.Fatal(err)
		}
		e, err := Open(propDir, p.opts())
		if err != nil {
			t.Fatal(err)
		}
		for range min(perStore, crashes-first) {
			// One time in four an I/O error instead of a power cut: the
			// store must stop cleanly and reopen on the same files.
			p.trace = nil
			p.traced()
			k := p.r.IntN(8)
			ioError := k < 2 && os.Getenv("BLOCKHASH_POWERCUT_EIO") != "0"
			diskFull := k == 2 && os.Getenv("BLOCKHASH_POWERCUT_EIO") != "0"
			p.cause = "power cut"
			switch {
			case diskFull:
				n := int64(p.r.IntN(256 << 10))
				full := vfs.NoSpaceAfter(n)
				p.fs.SetFault(func(op vfs.Op) error {
					err := full(op)
					if err != nil && !strings.HasPrefix(p.cause, "ENOSPC") {
						p.cause = fmt.Sprintf("ENOSPC after %d bytes, first on %s %s", n, op.Kind, op.Path)
					}
					return err
				})
			case ioError:
				fail := vfs.FailNth(int64(p.r.IntN(400)+1), syscall.EIO)
				p.fs.SetFault(func(op vfs.Op) error {
					err := fail(op)
					if err != nil {
						p.cause = fmt.Sprintf("EIO on %s %s", op.Kind, op.Path)
					}
					return err
				})
			default:
				p.fs.CrashAfter(int64(p.r.IntN(400)))
			}
			ops := p.workload(e, 60)
			e.Close()
			if ioError || diskFull {
				p.fs.SetFault(nil)
				p.ioErrors++
				if strings.HasPrefix(p.cause, "ENOSPC") {
					p.fulls++
				}
			} else {
				img := p.fs.Crashed()
				if img == nil {
					img = p.fs.Crash()
				}
				p.fs = img
				p.traced()
			}
			p.trace = append(p.trace, "-- "+p.cause+"; reopen")
			p.crashes++
			e = p.open(p.r.IntN(2) == 0)
			p.check(e, ops)
			for _, op := range ops {
				p.ops++
				if op.acked && op.kind == 'F' {
					p.acked++
				}
				if op.acked && strings.ContainsRune("SKRXV", rune(op.kind)) {
					p.catalog++
				}
			}
		}
		e.Close()
		total.crashes += p.crashes
		total.replays += p.replays
		total.ioErrors += p.ioErrors
		total.fulls += p.fulls
		total.ops += p.ops
		total.acked += p.acked
		total.catalog += p.catalog
		total.matchAge = append(total.matchAge, p.matchAge...)
	}
	lost := 0
	for _, a := range total.matchAge {
		if a > 0 {
			lost++
		}
	}
	t.Logf("%d failures (%d of them an I/O error or a full disk (%d filled up), the rest power cuts; %d second cuts during reopen), %d operations, %d acknowledged flushes, %d snapshots, clones, rollbacks and deletes; %d failures kept operations past the last flush",
		total.crashes, total.ioErrors, total.fulls, total.replays, total.ops, total.acked, total.catalog, lost)
	if total.acked == 0 || total.replays == 0 || total.catalog == 0 {
		t.Fatal("no flush acknowledged or no second crash: the test checked little")
	}
}

// TestPowerCutDuringRepair cuts the power at random points of fsck --repair
// (Open with Repair, then Fsck(true)) of a store with damaged slot records
// and a lost LevelDB CURRENT:
// the store must open afterwards (with Repair: the records may still be
// damaged) with every device as it was, and a second repair must leave it
// consistent.
func TestPowerCutDuringRepair(t *testing.T) {
	cuts := 150
	if testing.Short() {
		cuts = 30
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 5))
	base := vfs.NewCrashFS(seed)
	o := Options{FS: base, CommitInterval: -1, ReserveBytes: propReserve,
		Index: index.Options{CacheEntries: 256, WriteBufferBytes: 32 << 10, BlockCacheBytes: 1 << 20}}
	if err := Create(propDir, Options{FS: base, ExtentSize: 16 * BlockSize, ReserveBytes: propReserve}); err != nil {
		t.Fatal(err)
	}
	e, err := Open(propDir, o)
	if err != nil {
		t.Fatal(err)
	}
	want := propState{}
	for _, name := range []string{"a", "b"} {
		d, err := e.CreateDevice(name, propDevSize)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = make([]byte, propDevSize)
		for range 20 {
			off := int64(r.IntN(propDevSize/SectorSize)) * SectorSize
			n := min(int64(r.IntN(24)+1)*SectorSize, propDevSize-off)
			data := propData(r, off, n)
			if _, err := d.WriteAt(data, off); err != nil {
				t.Fatal(err)
			}
			copy(want[name][off:], data)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Damage the slot records (some zeroed, one flipped), so the repair
	// has records, counts and the index to rebuild.
	for _, d := range []struct {
		file string
		off  int64
		b    []byte
	}{{"extent-000000.meta", 0, make([]byte, 10*48)}, {"extent-000001.meta", 2*48 + 5, []byte{0xff}}} {
		f, err := base.OpenFile(propDir+"/blocks/"+d.file, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(d.b, d.off); err != nil {
			t.Fatal(err)
		}
		f.Sync()
		f.Close()
	}
	// And the index's CURRENT is lost: repair moves the index aside and
	// rebuilds it from the slot records.
	if err := base.Remove(propDir + "/index/CURRENT"); err != nil {
		t.Fatal(err)
	}
	if err := base.SyncDir(propDir + "/index"); err != nil {
		t.Fatal(err)
	}
	{ // the damage is there: the store needs its repair
		ro := o
		ro.FS = base.CrashClone()
		if e, err := Open(propDir, ro); err == nil {
			rep, err := e.Fsck(false)
			e.Close()
			if err == nil && rep.OK() {
				t.Fatal("damaged slot records went unnoticed")
			}
		}
	}
	var ops int64
	repair := func(fsys *vfs.CrashFS) error {
		ro := o
		ro.FS, ro.Repair = fsys, true
		e, err := Open(propDir, ro)
		if err != nil {
			return err
		}
		_, err = e.Fsck(true)
		return errors.Join(err, e.Close())
	}
	{ // how many file operations a repair takes
		c := base.CrashClone()
		if err := repair(c); err != nil {
			t.Fatal(err)
		}
		ops = c.Ops()
	}
	for range cuts {
		c := base.CrashClone()
		c.SetMode([]vfs.CrashMode{vfs.TearLast, vfs.KeepPrefix, vfs.DropUnsynced}[r.IntN(3)])
		k := int64(r.IntN(int(ops)))
		c.CrashAfter(k)
		repair(c)
		img := c.Crashed()
		if img == nil {
			img = c.Crash()
		}
		ro := o
		ro.FS, ro.Repair = img, true
		e, err := Open(propDir, ro)
		if err != nil {
			t.Fatalf("open after a cut %d operations into a repair: %v", k, err)
		}
		for name, w := range want {
			d, err := e.Device(name)
			if err != nil {
				t.Fatalf("cut after %d: %v", k, err)
			}
			got := make([]byte, propDevSize)
			if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got, w) {
				t.Fatalf("cut after %d: device %s changed (%v)", k, name, err)
			}
		}
		e.Close()
		if err := repair(img); err != nil {
			t.Fatalf("cut after %d: second repair: %v", k, err)
		}
		ro.FS, ro.Repair = img, false
		e, err = Open(propDir, ro)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := e.Fsck(false)
		if err != nil || !rep.OK() {
			t.Fatalf("cut after %d: fsck after the second repair: %v %+v", k, err, rep)
		}
		e.Close()
	}
	t.Logf("%d cuts in a repair of %d file operations", cuts, ops)
}
