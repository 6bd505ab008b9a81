package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"blockhash/engine"
)

// exportTarget is where export writes a device: a regular file (new, or
// existing with --force), a block device, or a character device or FIFO
// (written in order, like standard output).
// Every export writes through it, whether it reads the store (in
// parallel) or the daemon's stream (in order).
type exportTarget struct {
	path    string
	f       *os.File
	w       io.Writer // a target written in order: f, or standard output
	regular bool      // a regular file: every zero block is left a hole
	created bool      // export created it: a failed export removes it
	seq     bool      // written in order (character device, FIFO, standard output)
	size    int64
}

// openExportTarget opens path for an export: "-" is stdout; a block or
// character device is opened for writing as it is (no O_EXCL, no
// truncation); an existing regular file only with force (then it is
// truncated); a missing file is created.
func openExportTarget(path string, force bool, stdout io.Writer) (*exportTarget, error) {
	t := &exportTarget{path: path}
	if path == "-" {
		t.w, t.seq = stdout, true
		return t, nil
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		t.created, t.regular = err == nil, true
	case err != nil:
		return nil, err
	case st.Mode().IsRegular():
		if !force {
			return nil, fmt.Errorf("%s exists (--force overwrites it)", path)
		}
		t.f, err = os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		t.regular = true
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		t.f, err = os.OpenFile(path, os.O_WRONLY, 0)
		if err == nil {
			t.size, err = t.f.Seek(0, io.SeekEnd)
			if err != nil {
				t.f.Close()
				return nil, fmt.Errorf("cannot size %s: %w", path, err)
			}
		}
	case st.Mode()&(os.ModeCharDevice|os.ModeNamedPipe) != 0:
		t.f, err = os.OpenFile(path, os.O_WRONLY, 0)
		t.seq = true
	default:
		return nil, fmt.Errorf("%s is not a regular file, block or character device", path)
	}
	if err != nil {
		return nil, err
	}
	if t.seq {
		t.w = t.f
	}
	return t, nil
}

// export writes d to a regular file or block device with parallel
// writers. A regular file gets a hole for every all-zero 4 KiB block
// (unwritten, or written as zeros) and its size set at the end; a block
// device gets every byte, zeros included (it may hold old data).
func (t *exportTarget) export(d *engine.Device, used chunkSet, bar *progress) error {
	if err := t.fits(d.Name(), d.Size()); err != nil {
		bar.finish()
		return err
	}
	err := parallelChunks(d.Size(), func(buf []byte, off int64) error {
		defer bar.add(int64(len(buf)))
		if used.has(off / chunkSize) {
			if _, err := d.ReadAt(buf, off); err != nil {
				return err
			}
		} else {
			clear(buf)
		}
		return t.write(buf, off)
	})
	bar.finish()
	if err != nil {
		return err
	}
	return t.finish(d.Size())
}

// copyFrom writes the size bytes of volume name that r holds in order
// (the daemon's export stream) to the target; a stream short of size is
// an error.
func (t *exportTarget) copyFrom(r io.Reader, name string, size int64, bar *progress) error {
	defer bar.finish()
	if err := t.fits(name, size); err != nil {
		return err
	}
	buf := make([]byte, chunkSize)
	for off := int64(0); off < size; {
		b := buf[:min(chunkSize, size-off)]
		if n, err := io.ReadFull(r, b); err != nil {
			return fmt.Errorf("the export of %s ended after %d of %d bytes (the daemon's log says why): %w", name, off+int64(n), size, err)
		}
		if err := t.write(b, off); err != nil {
			return err
		}
		bar.add(int64(len(b)))
		off += int64(len(b))
	}
	// The daemon closes the connection once it has let the volume go:
	// wait for that, so that a command after this one finds it free.
	if n, _ := io.Copy(io.Discard, r); n > 0 {
		return fmt.Errorf("the export of %s ran past its %d bytes", name, size)
	}
	return t.finish(size)
}

// fits checks that a block device holds a volume of size bytes.
func (t *exportTarget) fits(name string, size int64) error {
	if !t.regular && !t.seq && t.size < size {
		return fmt.Errorf("%s (%s) is smaller than device %s (%s)", t.path, human(t.size), name, human(size))
	}
	return nil
}

// write writes buf, the bytes at off: in order to a target written in
// order (off is then where it stands), leaving holes for zero blocks in
// a regular file, every byte to a block device.
func (t *exportTarget) write(buf []byte, off int64) error {
	switch {
	case t.seq:
		_, err := t.w.Write(buf)
		return err
	case t.regular:
		return writeSparse(t.f, buf, off)
	default:
		_, err := t.f.WriteAt(buf, off)
		return err
	}
}

// finish sets a regular file's size to size and syncs a file or block
// device.
func (t *exportTarget) finish(size int64) error {
	if t.seq {
		return nil
	}
	if t.regular {
		if err := t.f.Truncate(size); err != nil {
			return err
		}
	}
	return t.f.Sync()
}

// writeSparse writes the blocks of buf (at off) that are not all zeros,
// each run of them with one write, and skips the zero ones: they stay
// holes.
func writeSparse(w io.WriterAt, buf []byte, off int64) error {
	const bs = engine.BlockSize
	run := -1 // start of the current run of data blocks in buf
	for i := 0; i < len(buf); i += bs {
		data := !isZero(buf[i:min(i+bs, len(buf))])
		switch {
		case data && run < 0:
			run = i
		case !data && run >= 0:
			if _, err := w.WriteAt(buf[run:i], off+int64(run)); err != nil {
				return err
			}
			run = -1
		}
	}
	if run >= 0 {
		_, err := w.WriteAt(buf[run:], off+int64(run))
		return err
	}
	return nil
}

// fail closes the target after a failed export and removes a file the
// export created; a file overwritten with --force is left as far as it got.
func (t *exportTarget) fail(err error) error {
	t.close()
	if t.created {
		os.Remove(t.path)
	} else if t.regular {
		err = fmt.Errorf("%w (%s is incomplete)", err, t.path)
	}
	return err
}

func (t *exportTarget) close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}
