//go:build rados

package rados

import (
	"strings"
	"testing"
	"time"
)

// Check finds a dangling index entry, a reference to a block that is gone
// and a pack whose data and keys disagree, and changes nothing.
func TestCheckFindsDamage(t *testing.T) {
	ns := testNamespace(t)
	h := newSimHost(t, ns, 1, 4)
	leader := testConn(t, ns, 20*time.Second)
	for lba := range 8 { // two sealed packs of 4
		if err := h.write(lba, lba); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.refs.Publish(1); err != nil {
		t.Fatal(err)
	}
	rep, err := leader.Check(h.x, []uint16{1})
	if err != nil || len(rep.Problems) != 0 || rep.Blocks != 8 || rep.Contents != 8 || rep.IndexEntries != 8 || rep.Referenced != 8 || rep.Garbage != 0 {
		t.Fatalf("healthy pool: %+v %v", rep, err)
	}
	// Damage: the first pack deleted under its entries and references, a
	// block's worth of data appended to the second without its key.
	gone := h.m[0].Pack()
	if err := leader.DeletePack(gone); err != nil {
		t.Fatal(err)
	}
	other := h.m[7].Pack()
	if err := leader.io.Write(other.Object(), make([]byte, BlockSize), 4*BlockSize); err != nil {
		t.Fatal(err)
	}
	rep, err = leader.Check(h.x, []uint16{1})
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(rep.Problems, "\n")
	for _, want := range []string{"which does not hold it", "which holds no block", "bytes of data for 4 keys"} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem saying %q in:\n%s", want, all)
		}
	}
	if n := strings.Count(all, "which does not hold it"); n != 4 {
		t.Errorf("%d dangling entries reported, want 4", n)
	}
}
