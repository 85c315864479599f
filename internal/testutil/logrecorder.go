package testutil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// LogRecorder is a slog handler that keeps every record, for tests that
// check what a component logs.
type LogRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *LogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *LogRecorder) WithGroup(string) slog.Handler            { return r }

func (r *LogRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}

// Find reports whether a record satisfies f.
func (r *LogRecorder) Find(f func(slog.Record) bool) bool {
	return r.Count(f) > 0
}

// Count returns how many records satisfy f.
func (r *LogRecorder) Count(f func(slog.Record) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.records {
		if f(rec) {
			n++
		}
	}
	return n
}

// Lines returns how many records at level or above contain s in their
// message or attributes ("key=value").
func (r *LogRecorder) Lines(level slog.Level, s string) int {
	return r.Count(func(rec slog.Record) bool {
		return rec.Level >= level && strings.Contains(rec.Message+attrs(rec), s)
	})
}

func attrs(rec slog.Record) string {
	var b strings.Builder
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	return b.String()
}
