package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"blockhash/engine"
)

func init() {
	register(&command{name: "import", usage: "NAME IMAGE", summary: "copy a raw image into a device (created to fit if missing)", run: runImport})
	register(&command{name: "export", usage: "NAME FILE", summary: "copy a device out to a raw file ('-' for stdout)", run: runExport})
}

// chunkSize is the request size of import and export; writers keep a few in
// flight so hashing uses every core.
const (
	chunkSize    = 1 << 20
	chunkWorkers = 4
)

func runImport(e *env, args []string) error {
	pos, err := parseArgs(newFlags("import"), args, 2)
	if err != nil {
		return err
	}
	name, image := pos[0], pos[1]
	if err := engine.ValidName(name); err != nil {
		return err
	}
	f, size, err := openImage(image)
	if err != nil {
		return err
	}
	defer f.Close()
	eng, err := e.openStore(engine.Options{})
	if err != nil {
		return err
	}
	defer eng.Close()
	d, err := eng.Device(name)
	created := false
	if errors.Is(err, engine.ErrNotFound) {
		devSize := (size + engine.BlockSize - 1) / engine.BlockSize * engine.BlockSize
		d, err = eng.CreateDevice(name, devSize)
		created = err == nil
	}
	if err != nil {
		return err
	}
	if size > d.Size() {
		return fmt.Errorf("image %s (%s) is larger than device %s (%s)", image, human(size), name, human(d.Size()))
	}
	// A device this import created goes again if the import fails: no
	// half-filled device is left behind.
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
	bar := newProgress(e.stderr, "import", size)
	err = parallelChunks(size, func(buf []byte, off int64) error {
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := d.WriteAt(buf, off); err != nil {
			return err
		}
		bar.add(int64(len(buf)))
		return nil
	})
	bar.finish()
	if err == nil {
		err = d.Flush()
	}
	if err != nil {
		return fail(err)
	}
	ds := d.Stats()
	el := time.Since(start)
	fmt.Fprintf(e.stdout, "imported %s into %s in %.1fs (%.0f MiB/s): %d data blocks, %d zero blocks\n",
		human(size), name, el.Seconds(), float64(size)/el.Seconds()/(1<<20), ds.DataBlocks, ds.ZeroBlocks)
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
		return nil, 0, fmt.Errorf("image %s is not a regular file or block device", image)
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

func runExport(e *env, args []string) error {
	pos, err := parseArgs(newFlags("export"), args, 2)
	if err != nil {
		return err
	}
	eng, err := e.openStore(readOnly)
	if err != nil {
		return err
	}
	defer eng.Close()
	d, err := eng.Device(pos[0])
	if err != nil {
		return err
	}
	// Only the 1 MiB chunks holding a mapped block are read: a large,
	// mostly empty device exports at the speed of its data.
	used, err := usedChunks(d)
	if err != nil {
		return err
	}
	if pos[1] == "-" {
		// Sequential, so a pipe gets the bytes in order.
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
			if _, err := e.stdout.Write(b); err != nil {
				return err
			}
		}
		return nil
	}
	out, err := os.OpenFile(pos[1], os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	bar := newProgress(e.stderr, "export", d.Size())
	err = parallelChunks(d.Size(), func(buf []byte, off int64) error {
		defer bar.add(int64(len(buf)))
		if !used.has(off / chunkSize) {
			return nil // a hole
		}
		if _, err := d.ReadAt(buf, off); err != nil {
			return err
		}
		if isZero(buf) {
			return nil // leave a hole
		}
		_, err := out.WriteAt(buf, off)
		return err
	})
	bar.finish()
	if err == nil {
		err = out.Truncate(d.Size())
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(pos[1])
		return err
	}
	fmt.Fprintf(e.stdout, "exported %s (%s) to %s\n", d.Name(), human(d.Size()), pos[1])
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
