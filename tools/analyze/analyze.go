// Package analyze measures how well images would deduplicate, without
// storing them: per image and cumulatively, in the spirit of the table of
// Windows images in the project's origin document.
//
// Concurrency: Analyze hashes each image with one goroutine per core; the
// set of seen blocks is guarded by one mutex per shard.
package analyze

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

const blockSize = 4096

// Row is one image's figures.
type Row struct {
	Image        string `json:"image"`
	RawBytes     int64  `json:"raw_bytes"`
	ZeroBlocks   int64  `json:"zero_blocks"`
	DataBlocks   int64  `json:"data_blocks"`
	UniqueBlocks int64  `json:"unique_blocks"` // distinct blocks within this image
	NewBlocks    int64  `json:"new_blocks"`    // blocks no earlier image had: what storing it adds
	// Cumulative over this image and the ones before it.
	CumRawBytes    int64   `json:"cumulative_raw_bytes"`
	CumStoredBytes int64   `json:"cumulative_stored_bytes"`
	CumSavedPct    float64 `json:"cumulative_saved_percent"`
}

// StoredPct is the share of the raw size this image adds to a store that
// already holds the images before it.
func (r Row) StoredPct() float64 {
	if r.RawBytes == 0 {
		return 0
	}
	return 100 * float64(r.NewBlocks*blockSize) / float64(r.RawBytes)
}

type key [16]byte // a truncated SHA-256: enough to count distinct blocks

const shards = 64

// set is the blocks seen so far, sharded to keep lock contention low.
type set struct {
	shard [shards]struct {
		mu sync.Mutex // guards m
		m  map[key]struct{}
	}
}

func newSet() *set {
	s := &set{}
	for i := range s.shard {
		s.shard[i].m = map[key]struct{}{}
	}
	return s
}

// add records k and reports whether it was new.
func (s *set) add(k key) bool {
	sh := &s.shard[k[0]%shards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[k]; ok {
		return false
	}
	sh.m[k] = struct{}{}
	return true
}

// Analyze reads each image in turn.
func Analyze(paths []string, progress func(done int64)) ([]Row, error) {
	seen := newSet()
	var rows []Row
	var cumRaw, cumStored int64
	for _, p := range paths {
		r, err := analyzeOne(p, seen, progress)
		if err != nil {
			return rows, err
		}
		cumRaw += r.RawBytes
		cumStored += r.NewBlocks * blockSize
		r.CumRawBytes, r.CumStoredBytes = cumRaw, cumStored
		if cumRaw > 0 {
			r.CumSavedPct = 100 * (1 - float64(cumStored)/float64(cumRaw))
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func analyzeOne(path string, seen *set, progress func(int64)) (Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return Row{}, err
	}
	defer f.Close()
	row := Row{Image: path}
	local := newSet() // distinct within this image
	const chunk = 1 << 20
	type job struct {
		buf []byte
		n   int
	}
	jobs := make(chan job, 4)
	free := make(chan []byte, 8)
	for range 8 {
		free <- make([]byte, chunk)
	}
	var mu sync.Mutex // guards row's counters
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for j := range jobs {
				var zero, data, uniq, fresh int64
				for off := 0; off < j.n; off += blockSize {
					b := j.buf[off:min(off+blockSize, j.n)]
					if len(b) < blockSize { // a short tail counts as a padded block
						pad := make([]byte, blockSize)
						copy(pad, b)
						b = pad
					}
					if allZero(b) {
						zero++
						continue
					}
					data++
					sum := sha256.Sum256(b)
					k := key(sum[:16])
					if local.add(k) {
						uniq++
					}
					if seen.add(k) {
						fresh++
					}
				}
				mu.Lock()
				row.ZeroBlocks += zero
				row.DataBlocks += data
				row.UniqueBlocks += uniq
				row.NewBlocks += fresh
				mu.Unlock()
				if progress != nil {
					progress(int64(j.n))
				}
				free <- j.buf
			}
		})
	}
	var readErr error
	for {
		buf := <-free
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			row.RawBytes += int64(n)
			jobs <- job{buf, n}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			readErr = fmt.Errorf("read %s: %w", path, err)
			break
		}
	}
	close(jobs)
	wg.Wait()
	return row, readErr
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
