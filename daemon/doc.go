// Package daemon is the Blockhash device manager: one Daemon owns one store
// (package engine) and serves its devices as /dev/ublkbN through an Exporter
// (the kernel's ublk driver via package ublk, or a fake in tests). It keeps
// the list of served devices in the store ("served.json") so the next
// daemon brings every one of them back: by user recovery where the kernel
// device survived (a plain stop leaves the devices, quiesced, for the next
// daemon; so does a crash), by re-creating it where it is gone. Kernel
// devices are taken over or deleted only when they are the daemon's own
// (claim: no other live server, the store device's size). The backend
// handed to the kernel for each device (guestBackend) turns store errors
// into errnos a guest understands and logs them, rate-limited. Clients
// (the blockhash command) talk to it over a unix socket that only root can
// use, one JSON request and one JSON response per connection. While it
// serves, the store's catalog changes through it too (catalog.go):
// snapshots and clones are taken while devices serve; a rollback or a
// deletion of a device it serves (or of one whose snapshot it serves) is
// refused. A device is served read-only on request, a snapshot always:
// the kernel device is read-only and the backend refuses writes (EROFS).
// For a migration's switch-over (switchover.go) a device's I/O is paused:
// its requests wait at the device's gate (gate.go) until resume, or fail
// with EIO when the paused device is released (del); invalidate drops the
// kernel's cached pages of a device whose content changed underneath it.
// Send and receive requests turn their connection into a replication
// stream after the first answer (replica.go); a receive into a served
// device is refused unless it is a migration's destination (live). The
// client side of sync and migrate, rounds and the switch, is Migrator
// (migrator.go). The CLI's create, fsck (check only), import and export
// go through it too (importexport.go): an export streams a volume's bytes
// after the first answer, an import takes the image's bytes in frames
// (frames.go; an end frame tells a finished stream from one cut short)
// into a device not served; a volume being streamed is busy (not served,
// rolled back or deleted meanwhile). With ListenMetrics it serves
// Prometheus metrics over HTTP (metrics.go:
// each device's requests counted by its backend, the store's figures
// computed at scrape time by storeCollector, the engine's commits through
// engine.Observer).
//
// # Concurrency
//
// A Daemon is safe for concurrent use: requests are handled on their own
// goroutines (at most maxConns at once). Daemon.mu guards the device table
// and the state file; it is held across an export's start and stop (those
// are the requests' whole work, and two of them on one device must not
// interleave), but never across the engine's commits of other devices'
// I/O, which goes on from the ublk queues without any daemon lock. A
// request passes its device's gate with atomics only (no lock while the
// gate is open); an import writes on ioWorkers goroutines of its own,
// holding Daemon.mu only to find or create its device and mark it busy
// (streamMu guards the import and export connections Serve's shutdown
// closes);
// pause waits for the requests in the store and flushes
// without Daemon.mu, so a long pause holds up nothing else. A request's
// metrics are client_golang counters and histograms resolved when its
// device starts: atomics, no lock on the I/O path. A scrape reads the
// store like the stats request does and takes no daemon lock.
package daemon
