package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockhash/engine"

	"golang.org/x/sys/unix"
)

type result struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, store string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	sock := filepath.Join(filepath.Dir(store), "no-daemon.sock")
	code := run(append([]string{"--store", store, "--socket", sock}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func mustCLI(t *testing.T, store string, args ...string) string {
	t.Helper()
	r := cli(t, store, args...)
	if r.code != 0 {
		t.Fatalf("blockhash %v: exit %d\n%s", args, r.code, r.stderr)
	}
	return r.stdout
}

// image writes an image of n 4 KiB blocks: random data with zero runs.
func image(t *testing.T, dir, name string, n int) string {
	t.Helper()
	b := make([]byte, n*4096)
	rand.Read(b)
	for i := 0; i < n; i += 4 {
		clear(b[i*4096 : (i+1)*4096])
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"4096", 4096, false}, {"512K", 512 << 10, false}, {"512M", 512 << 20, false},
		{"20G", 20 << 30, false}, {"1T", 1 << 40, false}, {"1.5G", 3 << 29, false},
		{"20GiB", 20 << 30, false}, {"20gb", 20 << 30, false},
		{"", 0, true}, {"abc", 0, true}, {"-1G", 0, true}, {"0", 0, true}, {"1e9", 0, true},
		{"1.1", 0, true}, {"99999999P", 0, true}, {"G", 0, true},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if tc.bad != (err != nil) || (!tc.bad && got != tc.want) {
			t.Errorf("parseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	img := image(t, dir, "a.img", 512)
	mustCLI(t, store, "import", "a", img)
	mustCLI(t, store, "import", "b", img) // the same image again: all duplicates
	var s struct {
		LogicalBytes  int64 `json:"logical_bytes"`
		ZeroBlocks    int64 `json:"zero_blocks"`
		UniqueBlocks  int64 `json:"unique_blocks"`
		StoredBytes   int64 `json:"stored_bytes"`
		MetadataBytes int64 `json:"metadata_bytes"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, store, "stats", "--json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.LogicalBytes != 2*512*4096 || s.ZeroBlocks != 2*128 || s.UniqueBlocks != 384 || s.StoredBytes != 384*4096 || s.MetadataBytes <= 0 {
		t.Fatalf("stats: %+v", s)
	}
	out := filepath.Join(dir, "b.out")
	mustCLI(t, store, "export", "b", out)
	want, _ := os.ReadFile(img)
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatal("exported image differs from the imported one")
	}
	if l := mustCLI(t, store, "list"); !strings.Contains(l, "a") || !strings.Contains(l, "b") {
		t.Fatalf("list: %s", l)
	}
	mustCLI(t, store, "fsck")
	mustCLI(t, store, "delete", "a")
	mustCLI(t, store, "delete", "b")
	if err := json.Unmarshal([]byte(mustCLI(t, store, "stats", "--json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.UniqueBlocks != 0 || s.StoredBytes != 0 {
		t.Fatalf("after deleting both devices: %+v", s)
	}
	// The same image twice: the second adds nothing; 384 of 1024 blocks stored.
	var rows []struct {
		NewBlocks   int64   `json:"new_blocks"`
		CumSavedPct float64 `json:"cumulative_saved_percent"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, store, "analyze", "--json", img, img)), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].NewBlocks != 384 || rows[1].NewBlocks != 0 || rows[1].CumSavedPct != 62.5 {
		t.Fatalf("analyze: %+v", rows)
	}
}

// TestBadInput: every bad input is a one-line error, a non-zero exit, and
// changes nothing in the store.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	mustCLI(t, store, "create", "small", "--size", "64K")
	big := image(t, dir, "big.img", 32)
	odd := filepath.Join(dir, "odd.img")
	empty := filepath.Join(dir, "empty.img")
	os.WriteFile(odd, make([]byte, 1000), 0o600)
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"image larger than device", []string{"import", "small", big}, "larger than device"},
		{"unknown device", []string{"export", "nope", filepath.Join(dir, "x")}, "no such device"},
		{"name taken", []string{"create", "small", "--size", "1M"}, "exists"},
		{"bad size", []string{"create", "c", "--size", "12Q"}, "invalid size"},
		{"size not a block multiple", []string{"create", "c", "--size", "1000"}, "multiple of 4096"},
		{"missing size", []string{"create", "c"}, "--size is required"},
		{"unknown flag", []string{"list", "--bogus"}, "blockhash list: unknown flag --bogus"},
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"bad hash", []string{"init", "--hash", "md5"}, "unknown hash"},
		{"init over a store", []string{"init"}, "already exists"},
		{"missing image", []string{"import", "small", filepath.Join(dir, "none.img")}, "no such file"},
		{"image not a sector multiple", []string{"import", "new", odd}, "not a multiple of 512"},
		{"image is a directory", []string{"import", "new", dir}, "not a regular file or block device"},
		{"image is empty", []string{"import", "new", empty}, "is empty"},
		{"image is a character device", []string{"import", "new", "/dev/null"}, "not a regular file or block device"},
		{"delete unknown", []string{"delete", "nope"}, "no such device"},
		{"add without a daemon", []string{"add", "x", "--size", "1M"}, "daemon is not running"},
		{"del without a daemon", []string{"del", "x"}, "daemon is not running"},
		{"del with nothing named", []string{"del"}, "exactly one of"},
		{"recover without an id", []string{"recover"}, "-n ID is required"},
		{"sample with a bad size", []string{"sample", "--size", "4000", filepath.Join(dir, "s.img")}, "multiple of 4096"},
		{"sample over an existing file", []string{"sample", "--size", "64K", big}, "file exists"},
		{"bench with a small device", []string{"bench", "--dir", dir, "--device-size", "64K"}, "128 KiB or more"},
		{"bench with a device size not a block multiple", []string{"bench", "--dir", dir, "--device-size", "1000000"}, "multiple of 4096"},
		{"bench with no device time", []string{"bench", "--dir", dir, "--device-time", "0s"}, "--device-time positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, store)
			r := cli(t, store, tc.args...)
			if r.code == 0 {
				t.Fatalf("exit 0, want failure")
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("stderr %q does not say %q", r.stderr, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 1 {
				t.Fatalf("error is %d lines:\n%s", lines+1, r.stderr)
			}
			if after := snapshot(t, store); after != before {
				t.Fatalf("the store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshot summarises the store's files (names, sizes, device and block
// counts) so a test can tell whether a command changed it.
func snapshot(t *testing.T, store string) string {
	t.Helper()
	var b strings.Builder
	for _, sub := range []string{"devices", "blocks"} {
		ents, _ := os.ReadDir(filepath.Join(store, sub))
		for _, e := range ents {
			fi, _ := e.Info()
			data, _ := os.ReadFile(filepath.Join(store, sub, e.Name()))
			b.WriteString(e.Name() + ":" + string(rune(fi.Size()%1000)) + ":" + hash(data) + " ")
		}
	}
	return b.String()
}

func hash(b []byte) string {
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return string(rune(h % 0x10FFFF))
}

// Two sample images of one family deduplicate against each other: the
// second one adds far fewer new blocks than it has data blocks.
func TestSampleImagesDeduplicate(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	mustCLI(t, "", "sample", "--size", "8M", a)
	mustCLI(t, "", "sample", "--size", "8M", "--member", "1", b)
	if fi, err := os.Stat(b); err != nil || fi.Size() != 8<<20 {
		t.Fatalf("sample image: %v %v", fi, err)
	}
	var rows []struct {
		DataBlocks int64 `json:"data_blocks"`
		NewBlocks  int64 `json:"new_blocks"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "", "analyze", "--json", a, b)), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].DataBlocks == 0 || rows[1].NewBlocks*4 > rows[1].DataBlocks {
		t.Fatalf("second image: %+v, want under a quarter of its data blocks new", rows)
	}
}

// Damage to one store file gives a clear error. Damage to a device's map
// takes only that device (or only its damaged blocks) offline: stats still
// works and reports it, and reading the device fails with a clear error.
func TestCorruptStoreFiles(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(store string) error
		cmd     []string // the command that must fail (stats when empty)
		want    string
	}{
		{"superblock bit flip", func(s string) error { return flip(filepath.Join(s, "superblock"), 20) }, nil, "checksum"},
		{"superblock truncated", func(s string) error { return os.Truncate(filepath.Join(s, "superblock"), 10) }, nil, "superblock"},
		{"volume header and copy bit flip", func(s string) error {
			return errors.Join(flip(filepath.Join(s, "devices", "1.vol"), 40), flip(filepath.Join(s, "devices", "1.vol"), 4096+40))
		}, []string{"export", "d"}, "cannot be read"},
		{"map entry bit flip", func(s string) error { return flip(filepath.Join(s, "mappages"), 2*4096+48+3) }, []string{"export", "d"}, "quarantined"},
		{"slot record bit flip", func(s string) error { return flip(filepath.Join(s, "blocks", "extent-000000.meta"), 50) }, nil, "corrupt"},
		{"extent truncated", func(s string) error { return os.Truncate(filepath.Join(s, "blocks", "extent-000000.dat"), 4096) }, nil, "extent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "store")
			mustCLI(t, store, "init", "--extent-size", "4M")
			mustCLI(t, store, "import", "d", image(t, dir, "d.img", 64))
			mustCLI(t, store, "import", "other", image(t, dir, "o.img", 8))
			if err := tc.corrupt(store); err != nil {
				t.Fatal(err)
			}
			args := []string{"stats"}
			if tc.cmd != nil {
				args = append(tc.cmd, filepath.Join(dir, "out.img"))
				// The rest of the store still works.
				mustCLI(t, store, "stats")
				mustCLI(t, store, "export", "other", filepath.Join(dir, "other.img"))
			}
			r := cli(t, store, args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("%v: exit %d, stderr %q, want an error about %q", args, r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestDataCorruptionIsDetected(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 16))
	if err := flip(filepath.Join(store, "blocks", "extent-000000.dat"), 5); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, store, "export", "d", filepath.Join(dir, "out")); r.code == 0 || !strings.Contains(r.stderr, "checksum") {
		t.Fatalf("export of a damaged block: exit %d %q", r.code, r.stderr)
	}
	if r := cli(t, store, "fsck"); r.code == 0 || !strings.Contains(r.stdout, "stored block fails its digest") {
		t.Fatalf("fsck: exit %d\n%s", r.code, r.stdout)
	}
}

func TestFsckRepairsRefcounts(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 16))
	// Damage slot 0's record: fsck reports it, --repair rebuilds it from the maps.
	if err := flip(filepath.Join(store, "blocks", "extent-000000.meta"), 37); err != nil {
		t.Fatal(err)
	}
	if r := cli(t, store, "fsck"); r.code == 0 {
		t.Fatal("fsck of a damaged record passed")
	}
	mustCLI(t, store, "fsck", "--repair")
	if out := mustCLI(t, store, "fsck"); !strings.Contains(out, "consistent") {
		t.Fatalf("after repair: %s", out)
	}
}

func flip(path string, off int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0x10
	_, err = f.WriteAt(b, off)
	return err
}

func TestUnwritableStore(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permissions: use a path under a regular file instead.
		dir := t.TempDir()
		f := filepath.Join(dir, "file")
		os.WriteFile(f, nil, 0o600)
		if r := cli(t, filepath.Join(f, "store"), "init"); r.code == 0 {
			t.Fatal("init under a regular file succeeded")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	if r := cli(t, filepath.Join(dir, "store"), "init"); r.code == 0 || !strings.Contains(r.stderr, "permission") {
		t.Fatalf("exit %d %q", r.code, r.stderr)
	}
}

func TestStoreLocked(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	e, err := (&env{store: store}).openStore(noBackground)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if r := cli(t, store, "list"); r.code == 0 || !strings.Contains(r.stderr, "in use") {
		t.Fatalf("exit %d %q", r.code, r.stderr)
	}
}

// TestExportSparse exports a large device holding a few blocks, to a file
// and to stdout: the file must match block for block and keep its holes.
func TestExportSparse(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	const size = 16 << 30
	blocks := map[int64][]byte{} // offset -> content
	for i, off := range []int64{0, 4096, 1<<20 - 4096, 5 << 30, size - 4096} {
		b := make([]byte, engine.BlockSize)
		rand.Read(b)
		b[0] = byte(i) | 1
		blocks[off] = b
	}
	eng, err := engine.Open(store, engine.Options{CommitInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	writeAll := func(d *engine.Device) {
		for off, b := range blocks {
			if _, err := d.WriteAt(b, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	big, err := eng.CreateDevice("big", size)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(big)
	// A chunk whose only block was written and then discarded exports as
	// a hole too.
	if _, err := big.WriteAt(blocks[0], 9<<30); err != nil {
		t.Fatal(err)
	}
	if err := big.Discard(9<<30, engine.BlockSize); err != nil {
		t.Fatal(err)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "big.img")
	mustCLI(t, store, "export", "big", out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != size {
		t.Fatalf("exported size %d, want %d", st.Size(), size)
	}
	got := make([]byte, engine.BlockSize)
	for off, b := range blocks {
		if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, b) {
			t.Fatalf("block at %d differs (%v)", off, err)
		}
	}
	// Everything else is zero: data regions lie only in chunks that hold
	// a written block, and read as zeros outside the blocks.
	if alloc := st.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 4<<20 {
		t.Fatalf("export allocated %d bytes for 4 chunks of data", alloc)
	}
	for pos := int64(0); ; {
		data, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data after pos
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		region := make([]byte, hole-data)
		if _, err := f.ReadAt(region, data); err != nil {
			t.Fatal(err)
		}
		for off := data; off < hole; off += engine.BlockSize {
			b := blocks[off]
			if b == nil {
				b = make([]byte, engine.BlockSize)
			}
			if !bytes.Equal(region[off-data:off-data+engine.BlockSize], b) {
				t.Fatalf("exported block at %d is wrong", off)
			}
		}
		pos = hole
	}

	// To stdout, on a small device: every byte in order, holes as zeros.
	eng, err = engine.Open(store, engine.Options{CommitInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	small, err := eng.CreateDevice("small", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 8<<20)
	for _, off := range []int64{0, 4096, 1<<20 - 4096, 6 << 20} {
		b := blocks[off%(1<<20)]
		if b == nil {
			b = blocks[0]
		}
		if _, err := small.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], b)
	}
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	if r := mustCLI(t, store, "export", "small", "-"); r != string(want) {
		t.Fatal("export to stdout differs from the device")
	}
}

// init over a store that lost its superblock is refused (with another hash
// every block would look damaged); init --recover-superblock rebuilds it
// from the store's files and the data reads back.
func TestInitLostSuperblock(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--hash", "sha1", "--extent-size", "256K")
	img := image(t, dir, "d.img", 100)
	mustCLI(t, store, "import", "d", img)
	if err := os.Remove(filepath.Join(store, "superblock")); err != nil {
		t.Fatal(err)
	}
	r := cli(t, store, "init")
	if r.code == 0 || !strings.Contains(r.stderr, "no superblock") || !strings.Contains(r.stderr, "--recover-superblock") {
		t.Fatalf("init over a store without superblock: exit %d %q", r.code, r.stderr)
	}
	if out := mustCLI(t, store, "init", "--recover-superblock"); !strings.Contains(out, "hash sha1, verify true, extents of 256.0 KiB") {
		t.Fatalf("recover: %s", out)
	}
	if out := mustCLI(t, store, "fsck"); !strings.Contains(out, "consistent") {
		t.Fatalf("fsck after recovery: %s", out)
	}
	mustCLI(t, store, "export", "d", filepath.Join(dir, "out.img"))
	want, _ := os.ReadFile(img)
	if got, _ := os.ReadFile(filepath.Join(dir, "out.img")); !bytes.Equal(got, want) {
		t.Fatal("export after recovery differs")
	}
	if r := cli(t, filepath.Join(dir, "empty"), "init", "--recover-superblock"); r.code == 0 || !strings.Contains(r.stderr, "no store") {
		t.Fatalf("recover where there is no store: exit %d %q", r.code, r.stderr)
	}
}

// A damaged superblock names the way out, which works.
func TestDamagedSuperblock(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "256K")
	mustCLI(t, store, "import", "d", image(t, dir, "d.img", 20))
	if err := flip(filepath.Join(store, "superblock"), 30); err != nil {
		t.Fatal(err)
	}
	r := cli(t, store, "stats")
	if r.code == 0 || !strings.Contains(r.stderr, "init --recover-superblock") {
		t.Fatalf("stats with a damaged superblock: exit %d %q", r.code, r.stderr)
	}
	mustCLI(t, store, "init", "--recover-superblock")
	if out := mustCLI(t, store, "fsck"); !strings.Contains(out, "consistent") {
		t.Fatalf("fsck after recovery: %s", out)
	}
}
