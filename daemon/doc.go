// Package daemon is the Blockhash device manager: one Daemon owns one store
// (package engine) and serves its devices as /dev/ublkbN through an Exporter
// (the kernel's ublk driver via package ublk, or a fake in tests). It keeps
// the list of served devices in the store ("served.json") so the next
// daemon brings every one of them back: by user recovery where the kernel
// device survived a crash, by re-creating it after a clean stop. Clients
// (the blockhash command) talk to it over a unix socket that only root can
// use, one JSON request and one JSON response per connection.
//
// # Concurrency
//
// A Daemon is safe for concurrent use: requests are handled on their own
// goroutines (at most maxConns at once). Daemon.mu guards the device table
// and the state file; it is held across an export's start and stop (those
// are the requests' whole work, and two of them on one device must not
// interleave), but never across the engine's commits of other devices'
// I/O, which goes on from the ublk queues without any daemon lock.
package daemon
