package config_test

import (
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
)

func TestParseScheduleErrors(t *testing.T) {
	tests := map[string]string{
		"":              "want 5 fields (minute hour day-of-month month day-of-week), got 0",
		"* * * *":       "want 5 fields (minute hour day-of-month month day-of-week), got 4",
		"* * * * * *":   "want 5 fields (minute hour day-of-month month day-of-week), got 6",
		"60 * * * *":    `minute field "60": 60 out of range 0-59`,
		"* 24 * * *":    `hour field "24": 24 out of range 0-23`,
		"* * 0 * *":     `day of month field "0": 0 out of range 1-31`,
		"* * 32 * *":    `day of month field "32": 32 out of range 1-31`,
		"* * * 13 *":    `month field "13": 13 out of range 1-12`,
		"* * * * 8":     `day of week field "8": 8 out of range 0-7`,
		"*/0 * * * *":   `minute field "*/0": invalid step "0" (want 1-59)`,
		"*/x * * * *":   `minute field "*/x": invalid step "x" (want 1-59)`,
		"5-1 * * * *":   `minute field "5-1": range "5-1" runs backwards`,
		"a * * * *":     `minute field "a": invalid value "a"`,
		"1,,2 * * * *":  `minute field "1,,2": invalid value ""`,
		"* * * foo *":   `month field "foo": invalid value "foo"`,
		"* * * * mon-":  `day of week field "mon-": invalid value ""`,
		"-1 * * * *":    `minute field "-1": invalid value ""`,
		"0 0 30 2 *":    "never matches a date",
		"0 0 31 4,6 *":  "never matches a date",
		"@reboot":       `unknown macro "@reboot"`,
		"* * * jan sun": "", // valid, see below
	}
	for expr, want := range tests {
		t.Run(expr, func(t *testing.T) {
			_, err := config.ParseSchedule(expr)
			switch {
			case want == "" && err != nil:
				t.Errorf("ParseSchedule(%q): %v", expr, err)
			case want != "" && (err == nil || err.Error() != want):
				t.Errorf("ParseSchedule(%q) = %v, want %q", expr, err, want)
			}
		})
	}
}

func TestScheduleNext(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		expr, from, want string
	}{
		{"22 2 * * *", "2025-03-10 01:00", "2025-03-10 02:22"},
		{"22 2 * * *", "2025-03-10 02:22", "2025-03-11 02:22"}, // strictly after
		{"22 2 * * *", "2025-12-31 03:00", "2026-01-01 02:22"},
		{"*/15 * * * *", "2025-03-10 10:07", "2025-03-10 10:15"},
		{"5/20 * * * *", "2025-03-10 10:30", "2025-03-10 10:45"},
		{"0 9-17/4 * * *", "2025-03-10 13:01", "2025-03-10 17:00"},
		{"0 0 * * 0", "2025-03-10 12:00", "2025-03-16 00:00"}, // Monday -> Sunday
		{"0 0 * * 7", "2025-03-10 12:00", "2025-03-16 00:00"}, // 7 is Sunday too
		{"0 0 * * sat", "2025-03-10 12:00", "2025-03-15 00:00"},
		{"30 1 1,15 * *", "2025-03-02 00:00", "2025-03-15 01:30"},
		{"0 0 13 * fri", "2025-06-01 00:00", "2025-06-06 00:00"}, // either day field matches
		{"0 0 13 * fri", "2025-06-10 00:00", "2025-06-13 00:00"},
		{"0 0 * jun mon", "2025-01-01 00:00", "2025-06-02 00:00"},
		{"0 0 29 2 *", "2025-01-01 00:00", "2028-02-29 00:00"},
		{"@monthly", "2025-01-31 23:59", "2025-02-01 00:00"},
		{"@hourly", "2025-01-31 23:59", "2025-02-01 00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.expr+" after "+tt.from, func(t *testing.T) {
			s, err := config.ParseSchedule(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(at(tt.from)); !got.Equal(at(tt.want)) {
				t.Errorf("Next = %s, want %s", got.Format("2006-01-02 15:04 Mon"), tt.want)
			}
		})
	}
}

func TestScheduleNextLocalTime(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	s, err := config.ParseSchedule("30 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	// 2025-03-30 02:30 does not exist in Berlin (clocks jump 02:00 -> 03:00).
	got := s.Next(time.Date(2025, 3, 29, 12, 0, 0, 0, loc))
	if want := time.Date(2025, 3, 31, 2, 30, 0, 0, loc); !got.Equal(want) {
		t.Errorf("Next = %s, want %s", got, want)
	}
	got = s.Next(time.Date(2025, 10, 25, 12, 0, 0, 0, loc))
	// 02:30 happens twice that night (03:00 CEST -> 02:00 CET); the first is
	// 00:30 UTC.
	if want := time.Date(2025, 10, 26, 0, 30, 0, 0, time.UTC); !got.Equal(want) || got.Location() != loc {
		t.Errorf("Next = %s, want %s", got, want)
	}
	// It fires once that night.
	if next, want := s.Next(got), time.Date(2025, 10, 27, 2, 30, 0, 0, loc); !next.Equal(want) {
		t.Errorf("Next after %s = %s, want %s", got, next, want)
	}
}
