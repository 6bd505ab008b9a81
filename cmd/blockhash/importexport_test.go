package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"blockhash/engine"

	"golang.org/x/sys/unix"
)

// withStdin runs fn with os.Stdin reading the file at path.
func withStdin(t *testing.T, path string, fn func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stdin
	os.Stdin = f
	defer func() { os.Stdin = old }()
	fn()
}

// foreign returns a 64 KiB image of format name: its signature over
// random bytes.
func foreign(t *testing.T, dir, name string) string {
	t.Helper()
	b := make([]byte, 64<<10)
	rand.Read(b)
	switch name {
	case "qcow2":
		copy(b, "QFI\xfb")
	case "VMDK":
		copy(b, "KDMV")
	case "VMDK descriptor":
		copy(b, "# Disk DescriptorFile\nversion=1\n")
	case "VHDX":
		copy(b, "vhdxfile")
	case "VDI":
		copy(b, "<<< Oracle VM VirtualBox Disk Image >>>\n")
		binary.LittleEndian.PutUint32(b[64:], 0xbeda107f)
	case "VHD":
		copy(b, "conectix")
	case "VHD fixed":
		copy(b[len(b)-512:], "conectix")
	}
	p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSniffFormat(t *testing.T) {
	vdi := make([]byte, 512)
	binary.LittleEndian.PutUint32(vdi[64:], 0xbeda107f)
	tests := []struct {
		name       string
		head, tail []byte
		want       string // "" for raw
	}{
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), nil, "qcow2"},
		{"vmdk sparse", []byte("KDMV\x01\x00\x00\x00"), nil, "VMDK"},
		{"vmdk descriptor", []byte("# Disk DescriptorFile\nversion=1\n"), nil, "VMDK"},
		{"vhdx", []byte("vhdxfile\x00\x00"), nil, "VHDX"},
		{"vdi", vdi, nil, "VDI"},
		{"vhd dynamic", []byte("conectix\x00\x00\x00\x02"), nil, "VHD"},
		{"vhd fixed", make([]byte, 512), []byte("conectix\x00\x00\x00\x02"), "VHD"},
		{"zeros", make([]byte, 4096), make([]byte, 512), ""},
		{"text", []byte("#!/bin/sh\necho QFI\xfb vhdxfile conectix KDMV\n# Disk DescriptorFile\n"), []byte("just text"), ""},
		{"qcow1", []byte("QFI\x00"), nil, ""},
		{"short", []byte("QF"), nil, ""},
		{"empty", nil, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, ok := sniffFormat(tc.head, tc.tail)
			if ok != (tc.want != "") || f.name != tc.want {
				t.Fatalf("sniffFormat = %q, %v; want %q", f.name, ok, tc.want)
			}
		})
	}
}

// Images that are not raw are refused, from a file and from standard
// input, with one line naming the format, and the store does not change;
// --raw imports their bytes as they are.
func TestImportRefusesNonRaw(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no qemu-img
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	mustCLI(t, store, "create", "keep", "--size", "64K") // list needs a store opened once
	for _, format := range []string{"qcow2", "VMDK", "VMDK descriptor", "VHDX", "VDI", "VHD", "VHD fixed"} {
		img := foreign(t, dir, format)
		want := strings.Fields(format)[0]
		for _, how := range []string{"file", "stdin"} {
			t.Run(format+" "+how, func(t *testing.T) {
				if how == "stdin" && format == "VHD fixed" {
					t.Skip("a stream's footer is not read before it is imported")
				}
				before := snapshot(t, store)
				var r result
				if how == "file" {
					r = cli(t, store, "import", "new", img)
				} else {
					withStdin(t, img, func() { r = cli(t, store, "import", "new", "-", "--size", "64K") })
				}
				if r.code == 0 || !strings.Contains(r.stderr, "is a "+want+" image") && !strings.Contains(r.stderr, "holds a "+want+" image") {
					t.Fatalf("exit %d, stderr %q: want a refusal naming %s", r.code, r.stderr, want)
				}
				if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 0 {
					t.Fatalf("error is %d lines:\n%s", lines+1, r.stderr)
				}
				if after := snapshot(t, store); after != before {
					t.Fatal("the store changed")
				}
				if l := mustCLI(t, store, "list"); strings.Contains(l, "new") {
					t.Fatalf("device created: %s", l)
				}
			})
		}
	}
	// --raw takes the bytes as they are.
	img := foreign(t, dir, "qcow2")
	mustCLI(t, store, "import", "q", img, "--raw")
	out := filepath.Join(dir, "q.out")
	mustCLI(t, store, "export", "q", out)
	if a, b := read(t, img), read(t, out); !bytes.Equal(a, b) {
		t.Fatal("--raw import differs")
	}
}

// With qemu-img on PATH, import converts an image that is not raw and
// says so on stderr (a stand-in qemu-img that drops the first 4 KiB).
func TestImportConvertsWithQemuImg(t *testing.T) {
	bin := t.TempDir()
	script := "#!/bin/sh\n# convert -q -f FMT -O raw -S 4k SRC DST\n[ \"$1 $4 $5 $6\" = \"convert qcow2 -O raw\" ] || { echo bad args: \"$@\" >&2; exit 1; }\nexec dd status=none if=\"$9\" of=\"${10}\" bs=4096 skip=1\n"
	if err := os.WriteFile(filepath.Join(bin, "qemu-img"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	img := foreign(t, dir, "qcow2")
	r := cli(t, store, "import", "q", img)
	if r.code != 0 || !strings.Contains(r.stderr, "qcow2 image: converting it to raw") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	out := filepath.Join(dir, "q.out")
	mustCLI(t, store, "export", "q", out)
	if want := read(t, img)[4096:]; !bytes.Equal(read(t, out), want) {
		t.Fatal("converted import differs from qemu-img's output")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 { // store, image, export
		t.Fatalf("temporary file left: %v", ents)
	}
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// textImage is a raw image whose first bytes look like text (a shell
// script), then random and zero blocks.
func textImage(t *testing.T, dir string) string {
	t.Helper()
	b := make([]byte, 3<<20+8192)
	rand.Read(b)
	copy(b, "#!/bin/sh\n# Disk DescriptorFile is only a comment here\n")
	clear(b[1<<20 : 2<<20])
	clear(b[2<<20+4096 : 2<<20+8192])
	p := filepath.Join(dir, "text.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Import then export, byte for byte, through files and through standard
// input and output.
func TestImportExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	img := textImage(t, dir)
	want := read(t, img)
	mustCLI(t, store, "import", "f", img)
	withStdin(t, img, func() { mustCLI(t, store, "import", "s", "-", "--size", "3153920") })
	mustCLI(t, store, "create", "e", "--size", "8M")
	withStdin(t, img, func() { mustCLI(t, store, "import", "e", "-") }) // existing device, larger than the stream
	for _, dev := range []string{"f", "s"} {
		out := filepath.Join(dir, dev+".out")
		mustCLI(t, store, "export", dev, out)
		if !bytes.Equal(read(t, out), want) {
			t.Fatalf("%s: file export differs", dev)
		}
		if got := mustCLI(t, store, "export", dev, "-"); got != string(want) {
			t.Fatalf("%s: stdout export differs", dev)
		}
	}
	got := []byte(mustCLI(t, store, "export", "e", "-"))
	if len(got) != 8<<20 || !bytes.Equal(got[:len(want)], want) || !isZero(got[len(want):]) {
		t.Fatal("import from stdin into a larger device differs")
	}
}

// Bad standard input streams fail with one line and leave the store as
// it was (a device the import would create does not appear).
func TestImportStdinHostile(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	mustCLI(t, store, "create", "small", "--size", "64K")
	file := func(name string, n int) string {
		b := make([]byte, n)
		rand.Read(b)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	half := file("half", 512<<10)
	odd := file("odd", 3<<20+100)
	empty := file("empty", 0)
	big := file("big", 128<<10)
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"truncated stream", half, []string{"import", "new", "-", "--size", "1M"}, "ended after 524288 bytes, short of --size"},
		{"stream ends within a sector", odd, []string{"import", "new", "-", "--size", "4M"}, "not a multiple of 512"},
		{"stream longer than --size", half, []string{"import", "new", "-", "--size", "256K"}, "more than --size"},
		{"stream larger than the device", big, []string{"import", "small", "-"}, "larger than device small"},
		{"--size larger than the device", half, []string{"import", "small", "-", "--size", "1M"}, "standard input (1.0 MiB) is larger than device small"},
		{"new device without --size", half, []string{"import", "new", "-"}, "only with --size"},
		{"empty stream", empty, []string{"import", "new", "-", "--size", "1M"}, "standard input is empty"},
		{"unreadable stream", dir, []string{"import", "new", "-", "--size", "1M"}, "is a directory"},
		{"--size not a sector multiple", half, []string{"import", "new", "-", "--size", "1000"}, "not a multiple of 512"},
		{"--size with a file", half, []string{"import", "new", half, "--size", "1M"}, "only for an image read from standard input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, store)
			beforeList := mustCLI(t, store, "list")
			var r result
			withStdin(t, tc.stdin, func() { r = cli(t, store, tc.args...) })
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q: want failure saying %q", r.code, r.stderr, tc.want)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 0 {
				t.Fatalf("error is %d lines:\n%s", lines+1, r.stderr)
			}
			if tc.name == "stream larger than the device" {
				return // an existing device is overwritten as the stream is read
			}
			if l := mustCLI(t, store, "list"); l != beforeList {
				t.Fatalf("devices changed:\n%s\n%s", beforeList, l)
			}
			if tc.args[1] == "new" {
				if after := snapshot(t, store); after != before && strings.Contains(mustCLI(t, store, "list"), "new") {
					t.Fatal("the new device was left behind")
				}
			}
		})
	}
}

// Export targets: /dev/null, an existing file (refused, then with
// --force), a new file, a snapshot; bad targets change nothing.
func TestExportTargets(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	img := textImage(t, dir)
	want := read(t, img)
	mustCLI(t, store, "import", "d", img)
	mustCLI(t, store, "snapshot", "d", "s")
	mustCLI(t, store, "import", "d", image(t, dir, "other.img", 16)) // the device moves on
	existing := filepath.Join(dir, "existing")
	old := bytes.Repeat([]byte("old data"), 1<<20) // 8 MiB, longer than the device
	if err := os.WriteFile(existing, old, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   string // a file that must then hold the snapshot's bytes
	}{
		{"existing file", []string{"export", "d@s", existing}, "exists (--force overwrites it)", ""},
		{"directory", []string{"export", "d@s", dir}, "not a regular file", ""},
		{"missing directory", []string{"export", "d@s", filepath.Join(dir, "none", "x")}, "no such file or directory", ""},
		{"unknown device", []string{"export", "nope", filepath.Join(dir, "nope.out")}, "no such device", ""},
		{"/dev/null", []string{"export", "d@s", "/dev/null"}, "", ""},
		{"existing file with --force", []string{"export", "d@s", existing, "--force"}, "", existing},
		{"new file", []string{"export", "d@s", filepath.Join(dir, "new.out")}, "", filepath.Join(dir, "new.out")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, store, tc.args...)
			if tc.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, tc.wantErr) {
					t.Fatalf("exit %d, stderr %q: want failure saying %q", r.code, r.stderr, tc.wantErr)
				}
				if lines := strings.Count(strings.TrimSpace(r.stderr), "\n"); lines > 0 {
					t.Fatalf("error is %d lines:\n%s", lines+1, r.stderr)
				}
				if !bytes.Equal(read(t, existing), old) {
					t.Fatal("the existing file changed")
				}
				if _, err := os.Stat(filepath.Join(dir, "nope.out")); err == nil {
					t.Fatal("a failed export left a file")
				}
				return
			}
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if tc.check != "" && !bytes.Equal(read(t, tc.check), want) {
				t.Fatal("exported file differs from the snapshot")
			}
		})
	}
}

// An export to a regular file leaves a hole for every all-zero 4 KiB
// block, unwritten or written as zeros, not only for whole zero chunks:
// the file allocates exactly its data blocks.
func TestExportHolesEveryZeroBlock(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	const size = 4 << 20
	want := make([]byte, size)
	data := 0
	for blk := 0; blk < size/engine.BlockSize; blk++ {
		// In every chunk: data blocks at 0, 3, 7, ...; zero blocks
		// written as zeros in between (the image is imported whole).
		if blk%3 == 0 && blk < 700 {
			b := want[blk*engine.BlockSize : (blk+1)*engine.BlockSize]
			rand.Read(b)
			b[0] = 1
			data++
		}
	}
	img := filepath.Join(dir, "img")
	if err := os.WriteFile(img, want, 0o600); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, store, "import", "d", img)
	out := filepath.Join(dir, "out")
	mustCLI(t, store, "export", "d", out)
	if !bytes.Equal(read(t, out), want) {
		t.Fatal("export differs")
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	// The file system may add a few blocks of its own (ext4's extent
	// tree); whole chunks would be 3 MiB.
	alloc := st.Sys().(*syscall.Stat_t).Blocks * 512
	if min := int64(data) * engine.BlockSize; alloc < min || alloc > min+64<<10 {
		t.Fatalf("export allocated %d bytes for %d data blocks (%d bytes)", alloc, data, min)
	}
	// Every data region holds only data blocks.
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for pos := int64(0); ; {
		start, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
		if err != nil {
			break // ENXIO: no data after pos
		}
		end, err := unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
		if err != nil {
			t.Fatal(err)
		}
		for off := start; off < end; off += engine.BlockSize {
			if isZero(want[off : off+engine.BlockSize]) {
				t.Fatalf("zero block at %d is allocated", off)
			}
		}
		pos = end
	}
}

// An export to a block device writes every block, zeros included, over
// whatever the device held (a loop device over a file of 0xff bytes).
func TestExportBlockDevice(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup")
	}
	dir := t.TempDir()
	backing := filepath.Join(dir, "backing")
	if err := os.WriteFile(backing, bytes.Repeat([]byte{0xff}, 5<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", backing).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	store := filepath.Join(dir, "store")
	mustCLI(t, store, "init", "--extent-size", "4M")
	img := textImage(t, dir)
	want := read(t, img)
	mustCLI(t, store, "import", "d", img)
	mustCLI(t, store, "export", "d", loop) // no --force needed
	got := read(t, backing)
	if !bytes.Equal(got[:len(want)], want) {
		t.Fatal("the block device does not hold the device's bytes (zero blocks skipped?)")
	}
	if !bytes.Equal(got[len(want):], bytes.Repeat([]byte{0xff}, len(got)-len(want))) {
		t.Fatal("bytes past the device's end changed")
	}
	mustCLI(t, store, "create", "huge", "--size", "8M")
	if r := cli(t, store, "export", "huge", loop); r.code == 0 || !strings.Contains(r.stderr, "is smaller than device huge") {
		t.Fatalf("export to a smaller block device: exit %d %q", r.code, r.stderr)
	}
}
