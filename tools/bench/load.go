package bench

import (
	"os"
	"strconv"
	"strings"
)

// loadAvg is the machine's one-minute load average (/proc/loadavg), or -1
// where there is none: figures taken on a shared machine are read with it.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
