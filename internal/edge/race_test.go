//go:build race

package edge_test

// raceEnabled shrinks the large transfers: the race detector slows the
// copy loops about tenfold.
const raceEnabled = true
