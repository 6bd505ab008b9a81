package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"blockhash/ublk"

	"github.com/rs/zerolog"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"256M", 256 << 20, true},
		{"1G", 1 << 30, true},
		{"64K", 64 << 10, true},
		{"4096", 4096, true},
		{"2T", 2 << 40, true},
		{"1GiB", 1 << 30, true},
		{"1g", 1 << 30, true},
		{"", 0, false},
		{"0", 0, false},
		{"-5M", 0, false},
		{"12X", 0, false},
		{"99999999999T", 0, false},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestWriteStats(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stats")
	writeStats(path, ublk.Stats{Reads: 1, Writes: 2, Flushes: 3, Discards: 4, WriteZeroes: 5, FUAWrites: 6}, zerolog.Nop())
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "reads 1\nwrites 2\nflushes 3\ndiscards 4\nwrite_zeroes 5\nfua_writes 6\n"
	if string(b) != want {
		t.Fatalf("stats file %q, want %q", b, want)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".stats.tmp*")); len(m) != 0 {
		t.Fatalf("temp files left: %v", m)
	}
}

func TestUsageErrors(t *testing.T) {
	var out bytes.Buffer
	for _, args := range [][]string{nil, {"bogus"}, {"add", "--nope"}} {
		err := run(args, &out)
		if err == nil {
			t.Errorf("run(%q) succeeded", args)
			continue
		}
		// Without ublk_drv the error may come from OpenControl instead.
		if !strings.Contains(err.Error(), "usage") && !strings.Contains(err.Error(), "modprobe ublk_drv") {
			t.Errorf("run(%q) = %v", args, err)
		}
	}
}
