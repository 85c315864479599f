package gossip_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

func TestMemberlistLogsMappedToSlog(t *testing.T) {
	t.Parallel()
	key := MustKey(t)
	rec := &testutil.LogRecorder{}
	a := MustOpen(t, testConfig("a", key))
	cfg := testConfig("b", key)
	cfg.Logger = slog.New(rec)
	cfg.Join = []string{a.Addr()}
	MustOpen(t, cfg)
	// memberlist logs the join attempt ("Initiating push/pull sync") at DEBUG.
	waitFor(t, "a memberlist debug line at debug level", func() bool {
		return rec.Find(func(r slog.Record) bool {
			return r.Level == slog.LevelDebug && strings.HasPrefix(r.Message, "Initiating push/pull sync")
		})
	})
	if rec.Find(func(r slog.Record) bool {
		return strings.HasPrefix(r.Message, "[") || strings.HasPrefix(r.Message, "memberlist:")
	}) {
		t.Error("a record kept memberlist's [LEVEL] tag or prefix")
	}
}
