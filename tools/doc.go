// Package tools holds the programs around the store that are not the store:
// analyze (dedup potential of images, without storing them) and bench (the
// performance figures of `blockhash bench` and `make bench`). Each lives in a
// subpackage and uses only the public APIs of engine, index and blockstore.
package tools
