package dump_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/dump"
)

// TestDumpRestoreRoundTrip: a dump of a Moodle-like database restores into
// a fresh database with the same rows (counts and checksums), sequence,
// view, trigger and function; the file's size and SHA-256 match its record.
func TestDumpRestoreRoundTrip(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			e := newEnv(t, eng.start)
			d := e.dumper(t)
			rec := mustDump(t, d)
			ext := map[string]string{"postgres": ".dump", "mysql": ".sql.gz"}[e.db.Driver]
			if !strings.HasPrefix(rec.Name, "moodle-") || !strings.HasSuffix(rec.Name, ext) || rec.Status != dump.StatusOK {
				t.Fatalf("record %+v: want moodle-<time>%s, status ok", rec, ext)
			}
			data, err := os.ReadFile(filepath.Join(e.db.DumpDir, rec.Name))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if int64(len(data)) != rec.Size || hex.EncodeToString(sum[:]) != rec.SHA256 {
				t.Fatalf("file has %d bytes sha256 %x; record says %d, %s", len(data), sum, rec.Size, rec.SHA256)
			}
			l := mustList(t, d)
			if len(l.Dumps) != 1 || l.Dumps[0] != rec || l.Running != nil || l.LastFailure != nil || l.LastSuccess == nil {
				t.Fatalf("listing %+v: want exactly the dump %+v", l, rec)
			}

			if err := d.Restore(context.Background(), rec.Name, dump.Target{Host: e.db.Host, Port: e.db.Port, Name: "moodle_copy"}); err != nil {
				t.Fatalf("restore: %v", err)
			}
			want, got := e.srv.Fingerprint(t, "moodle"), e.srv.Fingerprint(t, "moodle_copy")
			if got != want {
				t.Fatalf("restored database differs:\n got %s\nwant %s", got, want)
			}
			t.Logf("source and restored copy:\n%s", got)

			// A second restore into the now filled database is refused.
			err = d.Restore(context.Background(), rec.Name, dump.Target{Host: e.db.Host, Port: e.db.Port, Name: "moodle_copy"})
			if err == nil || !strings.Contains(err.Error(), "new or empty database") {
				t.Fatalf("restore into a filled database: %v, want a refusal", err)
			}
			if err := d.Restore(context.Background(), "../db.password", dump.Target{Host: e.db.Host, Port: e.db.Port}); !errors.Is(err, dump.ErrNotFound) {
				t.Fatalf("restore of a path outside the dumps: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestRetention: after each good dump, only the newest keep dumps remain;
// files the dumper did not make are never touched.
func TestRetention(t *testing.T) {
	e := newEnv(t, engines[0].start)
	e.db.Keep = 2
	clock := &fakeClock{now: time.Date(2026, 11, 27, 2, 22, 0, 0, time.UTC)}
	d := e.dumper(t, func(c *dump.Config) { c.Clock = clock })
	foreign := []string{"moodle-manual.dump", "notes.txt", "moodle-20200101T000000Z.dump.bak"}
	for _, name := range foreign {
		writeFile(t, filepath.Join(e.db.DumpDir, name), "not ours")
	}
	var names []string
	for i := 0; i < 4; i++ {
		names = append(names, mustDump(t, d).Name)
		clock.Set(clock.Now().Add(24 * time.Hour))
		l := mustList(t, d)
		if want := min(i+1, 2); len(l.Dumps) != want {
			t.Fatalf("after dump %d: %d dumps listed, want %d", i+1, len(l.Dumps), want)
		}
	}
	l := mustList(t, d)
	if l.Dumps[0].Name != names[2] || l.Dumps[1].Name != names[3] {
		t.Fatalf("kept %s, %s; want the newest two %v", l.Dumps[0].Name, l.Dumps[1].Name, names[2:])
	}
	want := append([]string{names[2], names[2] + ".json", names[3], names[3] + ".json"}, foreign...)
	got := dirFiles(t, e.db.DumpDir)
	if strings.Join(sorted(want), " ") != strings.Join(got, " ") {
		t.Fatalf("dump_dir holds %v, want %v", got, sorted(want))
	}
	if names[0] != "moodle-20261127T022200Z.dump" {
		t.Errorf("first dump named %s, want moodle-20261127T022200Z.dump", names[0])
	}

	// After a crash mid-dump and a restart: the temporary file is gone,
	// the dumps and foreign files stay, and the stats know the last dump.
	d.Close()
	writeFile(t, filepath.Join(e.db.DumpDir, ".nodeagent-tmp-moodle-20261201T022200Z.dump.123"), "partial")
	d = e.dumper(t, func(c *dump.Config) { c.Clock = clock })
	if got := dirFiles(t, e.db.DumpDir); strings.Join(sorted(want), " ") != strings.Join(got, " ") {
		t.Fatalf("after a restart dump_dir holds %v, want %v", got, sorted(want))
	}
	if s := d.Stats(); s.LastSize != l.Dumps[1].Size || s.LastSuccess.IsZero() || s.Failures != 0 {
		t.Fatalf("stats after a restart: %+v", s)
	}
}

// TestScheduleFiresAtTheMinute: with "22 2 * * *" the dump starts at 02:22
// local time, not a second before, and the next one is set for the next day.
func TestScheduleFiresAtTheMinute(t *testing.T) {
	e := newEnv(t, engines[0].start)
	start := time.Date(2026, 11, 27, 2, 21, 30, 0, time.Local)
	at := time.Date(2026, 11, 27, 2, 22, 0, 0, time.Local)
	clock := &fakeClock{now: start}
	d := e.dumper(t, func(c *dump.Config) { c.Clock = clock; c.NoSchedule = false })
	eventually(t, "the schedule to wait for 02:22", func() bool {
		w := clock.waiting()
		return len(w) == 1 && w[0].Equal(at)
	})
	if l := mustList(t, d); l.NextScheduled == nil || !l.NextScheduled.Equal(at) {
		t.Fatalf("next_scheduled %v, want %v", l.NextScheduled, at)
	}
	clock.Set(at.Add(-time.Second))
	if l := mustList(t, d); len(l.Dumps) != 0 || l.Running != nil {
		t.Fatalf("a dump before 02:22: %+v", l)
	}
	clock.Set(at)
	eventually(t, "the scheduled dump", func() bool { return len(mustList(t, d).Dumps) == 1 })
	rec := mustList(t, d).Dumps[0]
	if !rec.Started.Equal(at) || rec.Trigger != dump.TriggerSchedule {
		t.Fatalf("scheduled dump %+v: want started %v by the schedule", rec, at)
	}
	next := at.AddDate(0, 0, 1)
	eventually(t, "the next schedule", func() bool {
		l := mustList(t, d)
		return l.NextScheduled != nil && l.NextScheduled.Equal(next)
	})
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func sorted(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}
