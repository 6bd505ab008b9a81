package engine

import (
	"sync/atomic"
	"time"
)

// Observer is told how long each commit took and each of its synced
// steps, for metrics (the daemon's turn them into Prometheus histograms;
// the engine imports no metrics library). Its methods run on the
// committing goroutine, under the commit's lock: they must be quick and
// must not call the Engine. Only commits that write a record are
// observed (a flush with nothing to commit is not), and only steps that
// succeed.
type Observer interface {
	// Commit is a commit's whole duration: sealing the changes, the
	// synced steps and handing freed space back.
	Commit(d time.Duration)
	// Sync is one synced step of a commit (one of the Sync* names): the
	// step's writes, if any, and its fsyncs.
	Sync(step string, d time.Duration)
}

// The synced steps of a commit, in their order.
const (
	SyncData         = "data"          // fsync of the new block data (extent files)
	SyncJournal      = "journal"       // write and fsync of the journal record: the commit point
	SyncPages        = "pages"         // fsync of the map page file, after the page writes
	SyncSlots        = "slots"         // fsync of the slot records (extent files)
	SyncIndex        = "index"         // the index's synchronous LevelDB batch
	SyncJournalReset = "journal_reset" // truncate and fsync of the journal once applied
)

// observer holds the Observer (nil: none).
type observer struct{ p atomic.Pointer[Observer] }

// SetObserver makes o observe the commits from now on (nil: none).
func (e *Engine) SetObserver(o Observer) {
	if o == nil {
		e.obs.p.Store(nil)
		return
	}
	e.obs.p.Store(&o)
}

func (e *Engine) observer() Observer {
	if p := e.obs.p.Load(); p != nil {
		return *p
	}
	return nil
}

// synced runs one synced step of a commit and tells the observer how
// long it took.
func (e *Engine) synced(step string, f func() error) error {
	o := e.observer()
	if o == nil {
		return f()
	}
	start := time.Now()
	err := f()
	if err == nil {
		o.Sync(step, time.Since(start))
	}
	return err
}
