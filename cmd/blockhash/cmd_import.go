package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"blockhash/daemon"
	"blockhash/engine"
)

func init() {
	register(&command{name: "import", usage: "NAME IMAGE|- [--size SIZE] [--raw] [--domain NAME]", summary: "copy a raw image (or standard input) into a device (created to fit if missing)", run: runImport})
	register(&command{name: "export", usage: "NAME[@SNAP] FILE|DEVICE|- [--force]", summary: "copy a device or snapshot out to a raw file, a block device or stdout ('-')", run: runExport})
}

// chunkSize is the request size of import and export; writers keep a few in
// flight so hashing uses every core.
const (
	chunkSize    = 1 << 20
	chunkWorkers = 4
)

func runImport(e *env, args []string) error {
	fs := newFlags("import")
	var size sizeFlag
	fs.Var(&size, "size", "the size of an image read from standard input ('-'): the device is created at it if missing, and the stream must hold exactly that many bytes")
	raw := fs.Bool("raw", false, "import the bytes as they are, even those of a qcow2, VMDK, VHD, VHDX or VDI image")
	domain := domainFlag(fs)
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	e.domain = *domain
	name, image := pos[0], pos[1]
	if err := engine.ValidName(name); err != nil {
		return err
	}
	if image == "-" {
		return e.importStream(name, os.Stdin, size, *raw)
	}
	if size.set {
		return errors.New("--size is only for an image read from standard input ('-'): a file's size is known")
	}
	f, n, err := openImage(image)
	if err != nil {
		return err
	}
	defer f.Close()
	if !*raw {
		head := make([]byte, min(headLen, n))
		tail := make([]byte, min(512, n))
		if _, err := f.ReadAt(head, 0); err != nil {
			return fmt.Errorf("reading %s: %w", image, err)
		}
		if _, err := f.ReadAt(tail, n-int64(len(tail))); err != nil {
			return fmt.Errorf("reading %s: %w", image, err)
		}
		if format, ok := sniffFormat(head, tail); ok {
			return e.importConverted(name, image, format)
		}
	}
	return e.importInto(name, "image "+image, n, false, io.NewSectionReader(f, 0, n), func(d *engine.Device, bar *progress) (int64, error) {
		return n, parallelChunks(n, func(buf []byte, off int64) error {
			if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if _, err := d.WriteAt(buf, off); err != nil {
				return err
			}
			bar.add(int64(len(buf)))
			return nil
		})
	})
}

// importConverted imports an image that is not raw through qemu-img when
// it is installed: converted to a sparse raw file beside the image (it
// needs random access, so it cannot stream), imported, and removed.
func (e *env) importConverted(name, image string, format imageFormat) error {
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("image %s is a %s image, not raw: install qemu-img (import then converts it), convert it yourself (qemu-img convert -O raw), or import its bytes as they are with --raw", image, format.name)
	}
	// Beside the image first (the same file system is likely to have
	// room for it), else in the temporary directory.
	tmp, err := os.CreateTemp(filepath.Dir(image), "."+filepath.Base(image)+".raw-*")
	if err != nil {
		tmp, err = os.CreateTemp("", "blockhash-import-*.raw")
	}
	if err != nil {
		return fmt.Errorf("image %s is a %s image; converting it: %w", image, format.name, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	fmt.Fprintf(e.stderr, "%s is a %s image: converting it to raw with %s\n", image, format.name, qemu)
	cmd := exec.Command(qemu, "convert", "-q", "-f", format.qemu, "-O", "raw", "-S", "4k", image, tmp.Name())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert of %s (%s) failed: %v: %s", image, format.name, err, strings.Join(strings.Fields(string(out)), " "))
	}
	f, n, err := openImage(tmp.Name())
	if err != nil {
		return fmt.Errorf("qemu-img convert of %s: %w", image, err)
	}
	defer f.Close()
	return e.importInto(name, "image "+image, n, true, io.NewSectionReader(f, 0, n), func(d *engine.Device, bar *progress) (int64, error) {
		return n, parallelChunks(n, func(buf []byte, off int64) error {
			if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			if !isZero(buf) { // the converted file is sparse: skip its holes
				if _, err := d.WriteAt(buf, off); err != nil {
					return err
				}
			}
			bar.add(int64(len(buf)))
			return nil
		})
	})
}

// importStream imports an image read from r (standard input), whose size
// is not known before it ends. The device is never sized after the fact:
// an import must create it before writing to it, so a device that does
// not exist needs --size (the stream must then hold exactly that many
// bytes); an existing device takes a stream up to its size (with --size,
// exactly that many bytes). A stream that ends early, runs past the size,
// ends within a 512-byte sector or fails to read is an error, and a
// device the import created is deleted again.
func (e *env) importStream(name string, r io.Reader, size sizeFlag, raw bool) error {
	if size.set && size.v%engine.SectorSize != 0 {
		return fmt.Errorf("--size %d is not a multiple of 512", size.v)
	}
	// The first bytes say whether the stream holds a raw image; nothing
	// is created before they are read.
	head := make([]byte, headLen)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading standard input: %w", err)
	}
	head = head[:n]
	if n == 0 {
		return errors.New("standard input is empty")
	}
	if format, ok := sniffFormat(head, nil); ok && !raw {
		return fmt.Errorf("standard input holds a %s image, not raw: convert it first (qemu-img convert -O raw), import the file instead (with qemu-img installed, import converts it), or import its bytes as they are with --raw", format.name)
	}
	r = io.MultiReader(bytes.NewReader(head), r)
	want := int64(-1)
	if size.set {
		want = size.v
	}
	return e.importInto(name, "standard input", want, false, r, func(d *engine.Device, bar *progress) (int64, error) {
		limit := d.Size()
		if size.set {
			limit = size.v
		}
		got, err := streamChunks(r, "standard input", limit, func(buf []byte, off int64) error {
			if _, err := d.WriteAt(buf, off); err != nil {
				return err
			}
			bar.add(int64(len(buf)))
			return nil
		})
		switch {
		case err != nil:
			return got, err
		case got%engine.SectorSize != 0:
			return got, fmt.Errorf("standard input ended after %d bytes, not a multiple of 512 (truncated?)", got)
		case size.set && got < size.v:
			return got, fmt.Errorf("standard input ended after %d bytes, short of --size %d (truncated?)", got, size.v)
		case got == 0:
			return got, errors.New("standard input is empty")
		}
		// The stream must end at the limit.
		if n, _ := io.ReadFull(r, make([]byte, 1)); n > 0 {
			if size.set {
				return got, fmt.Errorf("standard input holds more than --size %d bytes", size.v)
			}
			return got, fmt.Errorf("standard input is larger than device %s (%s)", name, human(d.Size()))
		}
		return got, nil
	})
}

// importInto imports through the running daemon (importViaDaemon), which
// reads src, or else opens the store (importData), which runs copy.
func (e *env) importInto(name, what string, size int64, sparse bool, src io.Reader, copy func(d *engine.Device, bar *progress) (int64, error)) error {
	if c, ok := e.runningDaemon(); ok {
		return e.importViaDaemon(c, name, what, size, sparse, src)
	}
	return e.importData(name, what, size, copy)
}

// importViaDaemon streams src (size bytes, or up to the device's size
// when size < 0) to the daemon, which writes it into device name
// (daemon/importexport.go) with the checks of importData and importStream
// and answers with the figures it prints. A read error of src cuts the
// stream short: the daemon's import fails.
func (e *env) importViaDaemon(c daemon.Client, name, what string, size int64, sparse bool, src io.Reader) error {
	conn, resp, err := c.StreamAnswer(daemon.Request{Op: "import", Name: name, Size: max(size, 0), From: what, Sparse: sparse, ID: -1, Domain: e.domain})
	if err != nil {
		return err
	}
	defer conn.Close()
	start := time.Now()
	total := size
	if total < 0 {
		total = resp.Size
	}
	bar := newProgress(e.stderr, "import", total)
	fw := daemon.NewFrameWriter(conn)
	var rerr error
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(src, buf)
		if n > 0 {
			if _, werr := fw.Write(buf[:n]); werr != nil {
				break // the daemon stopped reading: its answer says why
			}
			bar.add(int64(n))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			fw.Close()
			break
		}
		if err != nil {
			rerr = fmt.Errorf("reading %s: %w", what, err)
			break // no end frame: the daemon fails the import
		}
	}
	bar.finish()
	conn.CloseWrite()
	var fin daemon.Response
	if err := json.NewDecoder(conn).Decode(&fin); err != nil {
		return errors.Join(rerr, fmt.Errorf("daemon: receive: %w", err))
	}
	if fin.Error != "" {
		if rerr != nil {
			return fmt.Errorf("%w: %s", rerr, fin.Error)
		}
		return &daemon.RemoteError{Msg: fin.Error}
	}
	if rerr != nil || len(fin.Devices) != 1 {
		return errors.Join(rerr, errors.New("daemon: import: no figures in the answer"))
	}
	if fin.Devices[0].Host != "" {
		// a daemon on a RADOS pool: no per-device block counts (stats
		// has the pool's)
		el := time.Since(start)
		fmt.Fprintf(e.stdout, "imported %s into %s in %.1fs (%.0f MiB/s) on host %s\n",
			human(fin.Size), name, el.Seconds(), float64(fin.Size)/el.Seconds()/(1<<20), fin.Devices[0].Host)
		return nil
	}
	ds := fin.Devices[0].Stats
	printImported(e, name, fin.Size, time.Since(start), ds.DataBlocks, ds.ZeroBlocks)
	return nil
}

// printImported prints an import's summary.
func printImported(e *env, name string, n int64, el time.Duration, data, zero uint64) {
	fmt.Fprintf(e.stdout, "imported %s into %s in %.1fs (%.0f MiB/s): %d data blocks, %d zero blocks\n",
		human(n), name, el.Seconds(), float64(n)/el.Seconds()/(1<<20), data, zero)
}

// importData finds device name, or creates it when size is known (>= 0;
// rounded up to whole blocks), checks that size fits, and runs copy,
// which returns the bytes it copied. A device it created is deleted
// again if the import fails: no half-filled device is left behind.
func (e *env) importData(name, what string, size int64, copy func(d *engine.Device, bar *progress) (int64, error)) error {
	eng, err := e.openStore(engine.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	d, err := eng.Device(name)
	created := false
	if errors.Is(err, engine.ErrNotFound) {
		if size < 0 {
			return fmt.Errorf("device %s does not exist: an import from standard input creates it only with --size (its size must be known before it is written)", name)
		}
		devSize := (size + engine.BlockSize - 1) / engine.BlockSize * engine.BlockSize
		d, err = eng.CreateDevice(name, devSize, engine.CreateOptions{Domain: e.domain})
		created = err == nil
	} else if err == nil {
		err = d.InDomain(e.domain)
	}
	if err != nil {
		return err
	}
	if size > d.Size() {
		return fmt.Errorf("%s (%s) is larger than device %s (%s)", what, human(size), name, human(d.Size()))
	}
	fail := func(err error) error {
		if !created {
			return err
		}
		if derr := eng.DeleteDevice(name); derr != nil {
			// The store failed, most likely on a full file system: open
			// it again as a command that frees space (the reopen
			// replays what was committed) and delete the device if it is
			// still there.
			eng.Close()
			if derr = e.deleteDevice(name); derr != nil {
				return fmt.Errorf("%w (and deleting the new device %s failed: %v)", err, name, derr)
			}
		}
		return fmt.Errorf("%w (the new device %s was deleted again)", err, name)
	}
	start := time.Now()
	total := size
	if total < 0 {
		total = d.Size()
	}
	bar := newProgress(e.stderr, "import", total)
	n, err := copy(d, bar)
	bar.finish()
	if err == nil {
		err = d.Flush()
	}
	if err != nil {
		return fail(err)
	}
	ds := d.Stats()
	printImported(e, name, n, time.Since(start), ds.DataBlocks, ds.ZeroBlocks)
	return nil
}

// openImage opens an image to import and checks it before anything is
// created: a regular file or a block device, its size a positive multiple
// of 512 bytes (a last partial 4 KiB block is padded with zeros).
func openImage(image string) (*os.File, int64, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	size := st.Size()
	switch mode := st.Mode(); {
	case mode.IsRegular():
	case mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0:
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("cannot size %s: %w", image, err)
		}
	default:
		f.Close()
		return nil, 0, fmt.Errorf("image %s is not a regular file or block device (use '-' to read standard input)", image)
	}
	switch {
	case size == 0:
		err = fmt.Errorf("image %s is empty", image)
	case size < 0 || size%engine.SectorSize != 0:
		err = fmt.Errorf("image %s is %d bytes, not a multiple of 512", image, size)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, size, nil
}

// streamChunks reads r in chunks, up to limit bytes, and hands each to fn
// on one of chunkWorkers goroutines (fn may keep no reference to buf). A
// last partial chunk is padded with zeros to a whole block. It returns how
// many bytes it read, and stops at the first error of fn or r (a read
// error says it reads what).
func streamChunks(r io.Reader, what string, limit int64, fn func(buf []byte, off int64) error) (int64, error) {
	type chunk struct {
		buf []byte
		off int64
	}
	var (
		mu       sync.Mutex
		firstErr error // guarded by mu
		wg       sync.WaitGroup
	)
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return firstErr
	}
	free := make(chan []byte, chunkWorkers+1)
	for range chunkWorkers + 1 {
		free <- make([]byte, chunkSize)
	}
	work := make(chan chunk)
	for range chunkWorkers {
		wg.Go(func() {
			for c := range work {
				if failed() == nil {
					if err := fn(c.buf, c.off); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
				free <- c.buf[:cap(c.buf)]
			}
		})
	}
	var off int64
	var rerr error
	for off < limit && failed() == nil {
		buf := <-free
		n, err := io.ReadFull(r, buf[:min(chunkSize, limit-off)])
		if n > 0 {
			pad := min(int64(n+engine.BlockSize-1)/engine.BlockSize*engine.BlockSize, int64(len(buf)))
			clear(buf[n:pad])
			work <- chunk{buf[:pad], off}
			off += int64(n)
		} else {
			free <- buf
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("reading %s: %w", what, err)
			break
		}
	}
	close(work)
	wg.Wait()
	return off, errors.Join(rerr, failed())
}

func runExport(e *env, args []string) error {
	fs := newFlags("export")
	force := fs.Bool("force", false, "overwrite FILE if it is an existing regular file")
	pos, err := parseArgs(fs, args, 2)
	if err != nil {
		return err
	}
	name, target := pos[0], pos[1]
	if c, ok := e.runningDaemon(); ok {
		return e.exportViaDaemon(c, name, target, *force)
	}
	eng, err := e.openStore(readOnly)
	if err != nil {
		return err
	}
	defer eng.Close()
	d, err := eng.Device(name)
	if err != nil {
		return err
	}
	// Only the 1 MiB chunks holding a mapped block are read: a large,
	// mostly empty device exports at the speed of its data.
	used, err := usedChunks(d)
	if err != nil {
		return err
	}
	t, err := openExportTarget(target, *force, e.stdout)
	if err != nil {
		return err
	}
	if t.seq {
		err = exportStream(d, used, t.w)
	} else {
		err = t.export(d, used, newProgress(e.stderr, "export", d.Size()))
	}
	if err == nil {
		err = t.close()
	}
	if err != nil {
		return t.fail(err)
	}
	if target != "-" {
		fmt.Fprintf(e.stdout, "exported %s (%s) to %s\n", d.Name(), human(d.Size()), target)
	}
	return nil
}

// exportViaDaemon exports volume name through the running daemon, which
// streams its bytes in order (daemon/importexport.go), to target.
func (e *env) exportViaDaemon(c daemon.Client, name, target string, force bool) error {
	conn, resp, err := c.StreamAnswer(daemon.Request{Op: "export", Name: name, ID: -1})
	if err != nil {
		return err
	}
	defer conn.Close()
	t, err := openExportTarget(target, force, e.stdout)
	if err != nil {
		return err
	}
	var bar *progress
	if t.seq {
		bar = newProgress(io.Discard, "export", resp.Size)
	} else {
		bar = newProgress(e.stderr, "export", resp.Size)
	}
	err = t.copyFrom(conn, name, resp.Size, bar)
	if err == nil {
		err = t.close()
	}
	if err != nil {
		return t.fail(err)
	}
	if target != "-" {
		fmt.Fprintf(e.stdout, "exported %s (%s) to %s\n", name, human(resp.Size), target)
	}
	return nil
}

// exportStream writes every byte of d to w in order (a pipe gets them in
// order), unmapped chunks as zeros.
func exportStream(d *engine.Device, used chunkSet, w io.Writer) error {
	buf := make([]byte, chunkSize)
	for off := int64(0); off < d.Size(); off += chunkSize {
		b := buf[:min(chunkSize, d.Size()-off)]
		if used.has(off / chunkSize) {
			if _, err := d.ReadAt(b, off); err != nil {
				return err
			}
		} else {
			clear(b)
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// chunkSet is a bitmap of chunk numbers (offset / chunkSize).
type chunkSet []uint64

func (c chunkSet) has(i int64) bool { return c[i/64]&(1<<(i%64)) != 0 }

func (c chunkSet) add(i int64) { c[i/64] |= 1 << (i % 64) }

// usedChunks returns the chunks of d that hold at least one mapped block.
func usedChunks(d *engine.Device) (chunkSet, error) {
	n := (d.Size() + chunkSize - 1) / chunkSize
	used := make(chunkSet, (n+63)/64)
	err := d.MappedBlocks(func(lba uint64) error {
		used.add(int64(lba) * engine.BlockSize / chunkSize)
		return nil
	})
	return used, err
}

// parallelChunks calls fn for each chunk of [0, size) with chunkWorkers
// goroutines; it stops at the first error.
func parallelChunks(size int64, fn func(buf []byte, off int64) error) error {
	var (
		mu       sync.Mutex
		next     int64
		firstErr error
		wg       sync.WaitGroup
	)
	for range chunkWorkers {
		wg.Go(func() {
			buf := make([]byte, chunkSize)
			for {
				mu.Lock()
				off := next
				next += chunkSize
				stop := firstErr != nil
				mu.Unlock()
				if stop || off >= size {
					return
				}
				if err := fn(buf[:min(chunkSize, size-off)], off); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
