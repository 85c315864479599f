package netlab

import (
	"os"
	"testing"
)

// Require skips tb where a lab cannot be built (no root, a missing tool;
// tools as for Available) or in -short mode, and fails it instead with
// CI=true, where every prerequisite must be installed.
func Require(tb testing.TB, tools ...string) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("network namespace test skipped in -short mode")
	}
	if err := Available(tools...); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
}

// NewForTest builds a lab of nodes for tb (after Require with tools) and
// removes it when tb ends; errors fail tb.
func NewForTest(tb testing.TB, nodes []string, tools ...string) *Lab {
	tb.Helper()
	Require(tb, tools...)
	lab, err := New(nodes...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := lab.Close(); err != nil {
			tb.Error(err)
		}
	})
	return lab
}
