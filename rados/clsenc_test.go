package rados

import (
	"bytes"
	"testing"
)

// The expected bytes are written out from Ceph's encoding rules (see
// clsenc.go); the cluster tests check that the OSD's classes accept them.
func TestEncodeCmpOmap(t *testing.T) {
	got := encodeCmpOmap(cmpModeString, cmpOpEQ, map[string][]byte{"b": {}, "a": {9}}, withDefault, nil)
	want := []byte{
		1, 1, 30, 0, 0, 0, // version, compat, length of what follows
		1, 1, // mode string, op EQ
		2, 0, 0, 0, // two pairs, sorted by key
		1, 0, 0, 0, 'a', 1, 0, 0, 0, 9,
		1, 0, 0, 0, 'b', 0, 0, 0, 0,
		1, 0, 0, 0, 0, // default present, empty
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("cmp_vals_op\n got %v\nwant %v", got, want)
	}
	got = encodeCmpOmap(cmpModeString, cmpOpEQ, map[string][]byte{"k": {7}}, noDefault, nil)
	want = []byte{1, 1, 16, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 'k', 1, 0, 0, 0, 7}
	if !bytes.Equal(got, want) {
		t.Fatalf("cmp_rm_keys_op\n got %v\nwant %v", got, want)
	}
	got = encodeCmpOmap(cmpModeString, cmpOpEQ, map[string][]byte{}, absentDefault, nil)
	want = []byte{1, 1, 7, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("empty, no default\n got %v\nwant %v", got, want)
	}
}

func TestEncodeLockAssert(t *testing.T) {
	got := encodeLockAssert("lease", lockExclusive, "h1", "")
	want := []byte{
		1, 1, 20, 0, 0, 0,
		5, 0, 0, 0, 'l', 'e', 'a', 's', 'e',
		1,
		2, 0, 0, 0, 'h', '1',
		0, 0, 0, 0,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("cls_lock_assert_op\n got %v\nwant %v", got, want)
	}
}
