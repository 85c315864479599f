package gossip_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// recorder is a slog handler keeping the records.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}

func (r *recorder) find(f func(slog.Record) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.records {
		if f(rec) {
			return true
		}
	}
	return false
}

func TestMemberlistLogsMappedToSlog(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	rec := &recorder{}
	a := MustOpen(t, testConfig("a", key))
	cfg := testConfig("b", key)
	cfg.Logger = slog.New(rec)
	cfg.Join = []string{a.Addr()}
	MustOpen(t, cfg)
	// memberlist logs the join attempt ("Initiating push/pull sync") at DEBUG.
	waitFor(t, "a memberlist debug line at debug level", func() bool {
		return rec.find(func(r slog.Record) bool {
			return r.Level == slog.LevelDebug && strings.HasPrefix(r.Message, "Initiating push/pull sync")
		})
	})
	if rec.find(func(r slog.Record) bool {
		return strings.HasPrefix(r.Message, "[") || strings.HasPrefix(r.Message, "memberlist:")
	}) {
		t.Error("a record kept memberlist's [LEVEL] tag or prefix")
	}
}
