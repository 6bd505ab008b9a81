package bench

import (
	"os"
	"testing"
)

func TestLoadAvg(t *testing.T) {
	if _, err := os.Stat("/proc/loadavg"); err != nil {
		if got := loadAvg(); got != -1 {
			t.Fatalf("no /proc/loadavg: loadAvg %v, want -1", got)
		}
		return
	}
	if got := loadAvg(); got < 0 {
		t.Fatalf("loadAvg %v, want the load (>= 0)", got)
	}
}
