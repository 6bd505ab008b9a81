package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/mattn/go-isatty"
)

// progress draws a progress bar on a terminal and nothing otherwise.
type progress struct {
	w     io.Writer
	label string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	ended chan struct{}
}

func newProgress(w io.Writer, label string, total int64) *progress {
	p := &progress{w: w, label: label, total: total, start: time.Now()}
	f, ok := w.(*os.File)
	if !ok || !isatty.IsTerminal(f.Fd()) {
		return p
	}
	p.stop, p.ended = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.ended)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				p.draw()
				fmt.Fprintln(p.w)
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

func (p *progress) add(n int64) { p.done.Add(n) }

func (p *progress) draw() {
	done := p.done.Load()
	frac := 1.0
	if p.total > 0 {
		frac = min(1, float64(done)/float64(p.total))
	}
	const width = 30
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = ' '
		if float64(i) < frac*width {
			bar[i] = '#'
		}
	}
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-3) / (1 << 20)
	fmt.Fprintf(p.w, "\r%s [%s] %5.1f%% %s %.0f MiB/s ", p.label, bar, 100*frac, human(done), rate)
}

func (p *progress) finish() {
	if p.stop != nil {
		close(p.stop)
		<-p.ended
	}
}
