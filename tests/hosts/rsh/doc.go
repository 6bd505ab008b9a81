// Command rsh is a tiny remote shell for tests that run "hosts" as network
// namespaces on one machine, where no sshd runs. It is a test tool, not a
// product: no authentication, no encryption; bind it only to test links.
//
//	rsh serve ADDR               listen on ADDR (host:port), run commands
//	rsh HOST[:PORT] CMD ARGS...  run CMD ARGS on HOST, like ssh HOST CMD ARGS
//
// Like ssh, the client joins CMD and ARGS with spaces and the server runs the
// line with /bin/sh -c, so `blockhash sync DEV HOST -e rsh --remote-bin
// 'blockhash --store /x'` works as it does with ssh.
//
// The wire (see frame.go): the client sends the command line ending in a
// newline, then its standard input as raw bytes, then half-closes its side
// (the command sees EOF on its stdin). The server answers with frames: stdout
// and stderr data, then one exit frame carrying the command's status (128+N
// when a signal N killed it). The client exits with that status, or 255 when
// the connection failed before an exit frame, as ssh does.
//
// A lost connection (a killed client, a link taken down) is noticed: an
// idle one by TCP keepalive within seconds, one with data in flight by the
// kernel's retransmission limit (socket.go). The server then closes the
// command's stdin and stdout, as sshd does when its client goes away, and
// kills the command's process group if it has not exited a few seconds
// later.
//
// Concurrency: the server handles each connection in its own goroutine;
// within one, a goroutine feeds stdin and one per output stream writes
// frames, serialised by frameWriter's mutex.
package main
