package main

import (
	"math"
	"slices"
	"time"
)

// samples are the values of one measurement over the runs.
type samples []float64

func (s *samples) add(v float64)               { *s = append(*s, v) }
func (s *samples) addDuration(d time.Duration) { s.add(d.Seconds()) }

// median returns the middle value (the mean of the two middle values of an
// even count), or 0 without values.
func (s samples) median() float64 {
	if len(s) == 0 {
		return 0
	}
	v := slices.Sorted(slices.Values(s))
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func (s samples) min() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Min(s)
}

func (s samples) max() float64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// quantile returns the value at rank q (0..1) by the nearest-rank method,
// or 0 without values.
func (s samples) quantile(q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	v := slices.Sorted(slices.Values(s))
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}
