package pool

import "time"

func nowPlus(d time.Duration) time.Time { return time.Now().Add(d) }
func pastDeadline(t time.Time) bool     { return time.Now().After(t) }
func sleepBrief()                       { time.Sleep(200 * time.Millisecond) }
