// Package goldenfile checks encoded formats against files in the calling
// package's testdata/ directory, for tests only: a change to an on-disk or
// wire format fails until it is made deliberately (a version raised) and
// recorded with `go test -update`. It holds no state beyond the -update
// flag and is safe for parallel tests writing different files.
package goldenfile
