package rados

import (
	"errors"
	"slices"
	"testing"
)

func TestRefsRoundTrip(t *testing.T) {
	for _, locs := range [][]Loc{nil, {5}, {9, 3, 3, 0, 1 << 50}} {
		b := encodeRefs(7, 3, locs)
		r, h, got, err := decodeRefs(b)
		if err != nil || r != 7 || h != 3 {
			t.Fatalf("%v: round %d host %d %v", locs, r, h, err)
		}
		want := slices.Clone(locs)
		slices.Sort(want)
		want = slices.Compact(want)
		if len(want) > 0 && want[0] == 0 {
			want = want[1:]
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("got %v want %v", got, want)
		}
	}
}

func TestRefsRefusesDamage(t *testing.T) {
	good := encodeRefs(1, 1, []Loc{1, 2, 3})
	for name, b := range map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-5],
		"bit flip":  func() []byte { c := slices.Clone(good); c[25] ^= 1; return c }(),
		"bad magic": func() []byte { c := slices.Clone(good); c[0] = 'X'; return c }(),
	} {
		if _, _, _, err := decodeRefs(b); !errors.Is(err, ErrBadValue) {
			t.Errorf("%s: %v, want ErrBadValue", name, err)
		}
	}
}

// Checksummed: the fuzzer mutates the body and fixes the checksum, so the
// decoder's checks behind it are reached.
func FuzzDecodeRefs(f *testing.F) {
	f.Add(encodeRefs(1, 2, []Loc{1, 2, 3})[:refsHeader+24], uint8(0))
	f.Add([]byte(refsMagic), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, mode uint8) {
		b := slices.Clone(body)
		if mode&1 == 0 {
			b = appendCRC(b)
		}
		r, h, locs, err := decodeRefs(b)
		if err != nil {
			return
		}
		again := encodeRefs(r, h, locs)
		if !slices.Equal(again, b) {
			t.Fatalf("decoded %d/%d/%v re-encodes differently", r, h, locs)
		}
	})
}

func appendCRC(b []byte) []byte {
	var tail [4]byte
	c := crc32Sum(b)
	tail[0], tail[1], tail[2], tail[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
	return append(b, tail[:]...)
}
