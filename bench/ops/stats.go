package main

import (
	"fmt"
	"math"
	"slices"
	"time"
)

func sortDurations(d []time.Duration) { slices.Sort(d) }

// quantile is the nearest-rank q-quantile of sorted values (q=1: the
// maximum); 0 when there are none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// median is the middle value (the mean of the two middle ones for an even
// count) of unsorted values.
func median(values []time.Duration) time.Duration {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 0 {
		return (s[mid-1] + s[mid]) / 2
	}
	return s[mid]
}

// fmtMs formats a latency in milliseconds with 3 significant decimals
// below 10ms.
func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	if ms < 10 {
		return fmt.Sprintf("%.3f", ms)
	}
	return fmt.Sprintf("%.0f", ms)
}

func fmtS(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}
