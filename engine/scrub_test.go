package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
)

// Scrub finds a damaged stored block while writers run, marks it (the
// mark survives a restart), names every device block that lost it, and a
// write of the same content heals it.
func TestScrubFindsDamage(t *testing.T) {
	dir, want := threeDevices(t)
	e := openOK(t, dir)
	a, _ := e.Device("a")
	ent, _ := a.m.get(1) // block(2): a block 1 and b block 0
	damageSlot(t, dir, e, ent.Slot)

	w, _ := e.CreateDevice("busy", 4<<20)
	var wg sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	wg.Go(func() {
		for i := uint64(0); ctx.Err() == nil; i++ {
			if _, err := w.WriteAt(block(100+i%300), int64(i%1024)*BlockSize); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 0 {
				e.Flush()
			}
		}
	})
	var progress int
	rep, err := e.Scrub(context.Background(), ScrubOptions{Progress: func(ScrubProgress) { progress++ }})
	stop()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if rep.NewDamaged != 1 || rep.DamagedSlots != 1 || progress == 0 {
		t.Fatalf("scrub: %+v (progress calls %d), want one damaged block", rep, progress)
	}
	wantR := []DamagedRange{{Device: "a", FirstLBA: 1, Blocks: 1, Why: WhyDamagedData}, {Device: "b", FirstLBA: 0, Blocks: 1, Why: WhyDamagedData}}
	if !slices.Equal(rep.Damaged, wantR) {
		t.Fatalf("damaged %v, want %v", rep.Damaged, wantR)
	}
	if rep.BlocksChecked < 8 {
		t.Fatalf("checked %d blocks, want at least 8", rep.BlocksChecked)
	}
	e.Close()
	e = openOK(t, dir)
	if again, err := e.Scrub(context.Background(), ScrubOptions{Rate: 64 << 20}); err != nil || again.KnownDamaged != 1 || again.NewDamaged != 0 {
		t.Fatalf("scrub after restart: %v %+v, want the damage remembered", err, again)
	}
	b, _ := e.Device("b")
	if _, err := b.ReadAt(make([]byte, BlockSize), 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of the damaged block: %v", err)
	}
	h, _ := e.CreateDevice("heal", 1<<20)
	writeBlocks(t, h, 0, block(2))
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	checkDevices(t, e, want)
	fsckOK(t, e)
}

// A canceled scrub stops and says so.
func TestScrubCancel(t *testing.T) {
	dir, _ := threeDevices(t)
	e := openOK(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := e.Scrub(ctx, ScrubOptions{})
	if err != nil || !rep.Canceled {
		t.Fatalf("canceled scrub: %v %+v", err, rep)
	}
}
