package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed 5-field cron expression (minute hour day-of-month
// month day-of-week), as used by db.schedule. It supports *, numbers,
// names (jan-dec, sun-sat), ranges a-b, lists a,b and steps */n, a-b/n,
// a/n, day-of-week 7 as Sunday, and the macros @hourly, @daily, @midnight,
// @weekly, @monthly, @yearly, @annually. As in cron, when both day fields
// are restricted a day matches either of them.
type Schedule struct {
	minute, hour, dom, month, dow uint64 // bit i set: value i matches
	domStar, dowStar              bool
}

type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: strings.Fields("jan feb mar apr may jun jul aug sep oct nov dec")},
	{name: "day of week", min: 0, max: 7, names: strings.Fields("sun mon tue wed thu fri sat")},
}

var cronMacros = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// ParseSchedule parses a cron expression. It rejects expressions that
// never match a date, such as "0 0 30 2 *".
func ParseSchedule(expr string) (*Schedule, error) {
	expr = strings.TrimSpace(expr)
	if m, ok := cronMacros[strings.ToLower(expr)]; ok {
		expr = m
	} else if strings.HasPrefix(expr, "@") {
		return nil, fmt.Errorf("unknown macro %q", expr)
	}
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(fields))
	}
	var sets [5]uint64
	for i, text := range fields {
		set, err := parseCronField(text, cronFields[i])
		if err != nil {
			return nil, fmt.Errorf("%s field %q: %w", cronFields[i].name, text, err)
		}
		sets[i] = set
	}
	if sets[4]&(1<<7) != 0 {
		sets[4] = sets[4]&^(1<<7) | 1 // 7 is Sunday too
	}
	s := &Schedule{
		minute: sets[0], hour: sets[1], dom: sets[2], month: sets[3], dow: sets[4],
		domStar: strings.HasPrefix(fields[2], "*"),
		dowStar: strings.HasPrefix(fields[4], "*"),
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, errors.New("never matches a date")
	}
	return s, nil
}

func parseCronField(text string, f cronField) (uint64, error) {
	var set uint64
	for part := range strings.SplitSeq(text, ",") {
		lo, hi, step, err := parseCronPart(part, f)
		if err != nil {
			return 0, err
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

// parseCronPart parses one list element: *, a, a-b, each optionally /step.
func parseCronPart(part string, f cronField) (lo, hi, step int, err error) {
	rng, stepText, hasStep := strings.Cut(part, "/")
	step = 1
	if hasStep {
		step, err = strconv.Atoi(stepText)
		if err != nil || step < 1 || step > f.max {
			return 0, 0, 0, fmt.Errorf("invalid step %q (want 1-%d)", stepText, f.max)
		}
	}
	if rng == "*" {
		return f.min, f.max, step, nil
	}
	loText, hiText, isRange := strings.Cut(rng, "-")
	if lo, err = cronValue(loText, f); err != nil {
		return 0, 0, 0, err
	}
	switch {
	case isRange:
		if hi, err = cronValue(hiText, f); err != nil {
			return 0, 0, 0, err
		}
		if hi < lo {
			return 0, 0, 0, fmt.Errorf("range %q runs backwards", rng)
		}
	case hasStep:
		hi = f.max // "a/n" means a-max/n
	default:
		hi = lo
	}
	return lo, hi, step, nil
}

func cronValue(text string, f cronField) (int, error) {
	for i, name := range f.names {
		if strings.EqualFold(text, name) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("invalid value %q", text)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%d out of range %d-%d", v, f.min, f.max)
	}
	return v, nil
}

// Next returns the first matching minute strictly after t, in t's location,
// or the zero time if none comes within nine years. A wall-clock time that
// a daylight-saving jump skips does not fire that day; one that repeats
// fires once, at its first occurrence.
func (s *Schedule) Next(t time.Time) time.Time {
	loc := t.Location()
	t = t.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(9, 0, 0)
	for t.Before(limit) {
		var next time.Time
		switch {
		case !has(s.month, int(t.Month())):
			next = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, loc)
		case !s.dayMatches(t):
			next = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, loc)
		case !has(s.hour, t.Hour()):
			next = t.Add(time.Duration(60-t.Minute()) * time.Minute) // next wall-clock hour
		case !has(s.minute, t.Minute()) || repeatedWallClock(t):
			next = t.Add(time.Minute)
		default:
			return t
		}
		if !next.After(t) { // a daylight-saving repeat of the hour
			next = t.Add(time.Minute)
		}
		t = next
	}
	return time.Time{}
}

// repeatedWallClock reports whether t's wall-clock time already occurred an
// hour earlier: the second pass of an hour that daylight saving repeats.
func repeatedWallClock(t time.Time) bool {
	p := t.Add(-time.Hour)
	return p.Day() == t.Day() && p.Hour() == t.Hour() && p.Minute() == t.Minute()
}

func (s *Schedule) dayMatches(t time.Time) bool {
	dom, dow := has(s.dom, t.Day()), has(s.dow, int(t.Weekday()))
	if s.domStar || s.dowStar {
		return dom && dow
	}
	return dom || dow
}

func has(set uint64, v int) bool { return set&(1<<v) != 0 }
