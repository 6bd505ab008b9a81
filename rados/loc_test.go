package rados

import (
	"bytes"
	"errors"
	"testing"
)

func TestLocRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		p PackID
		i int
	}{
		{PackID{1, 0}, 0},
		{PackID{1, 1}, 1023},
		{PackID{65535, MaxSeq}, 1023},
		{PackID{7, 123456789}, 512},
	} {
		l, err := MakeLoc(tc.p, tc.i)
		if err != nil {
			t.Fatalf("%v/%d: %v", tc.p, tc.i, err)
		}
		if l == 0 || l.Pack() != tc.p || l.Block() != tc.i || l.Offset() != uint64(tc.i)*BlockSize {
			t.Fatalf("%v/%d: got %v pack %v block %d", tc.p, tc.i, l, l.Pack(), l.Block())
		}
		got, err := decodeIndexValue(encodeIndexValue(l))
		if err != nil || got != l {
			t.Fatalf("index value of %v: %v %v", l, got, err)
		}
	}
}

func TestLocRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		p PackID
		i int
	}{
		{PackID{0, 1}, 0},          // host 0 is no host
		{PackID{1, MaxSeq + 1}, 0}, // sequence too big
		{PackID{1, 1}, PackBlocks}, // block past the pack
		{PackID{1, 1}, -1},
	} {
		if _, err := MakeLoc(tc.p, tc.i); !errors.Is(err, ErrArg) {
			t.Errorf("%v/%d: %v, want ErrArg", tc.p, tc.i, err)
		}
	}
}

func TestDecodeIndexValueRefusesGarbage(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{1},
		{2, 1, 0, 0, 0, 0, 0, 0, 0},          // unknown format
		{1, 0, 0, 0, 0, 0, 0, 0, 0},          // location zero
		{1, 1, 0, 0, 0, 0, 0, 0, 0},          // host zero
		append(encodeIndexValue(1<<48+1), 0), // too long
	} {
		if _, err := decodeIndexValue(b); !errors.Is(err, ErrBadValue) {
			t.Errorf("%x: %v, want ErrBadValue", b, err)
		}
	}
}

func TestShardOfUsesLeadingBytes(t *testing.T) {
	k := bytes.Repeat([]byte{0}, KeySize)
	k[3] = 0x35
	if s := shardOf(k, 16); s != 5 {
		t.Fatalf("shard %d, want 5", s)
	}
	k[0] = 0xff
	if s := shardOf(k, 1<<31); s != 0x7f000035 {
		t.Fatalf("shard %#x", s)
	}
	if s := shardOf(k, 1); s != 0 {
		t.Fatalf("one shard: %d", s)
	}
}
