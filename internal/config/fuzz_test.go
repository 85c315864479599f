package config_test

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/nodeagent/nodeagent/internal/config"
)

// problemLine is how every problem of a *ValidationError starts: the dotted
// key it is about (or "config" for the document itself), each element a
// plain name or a quoted one, then the printable rest of the line.
var problemLine = regexp.MustCompile(`^(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\.(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")|\[[0-9]+\])*: `)

// FuzzParse: any config file is either refused with one line per problem,
// each naming its key, or accepted as a config that marshals and parses
// back to itself.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/design.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(webYAML))
	f.Add([]byte("role: controller\nmirror: {source: /moodle/html/moodle}\ndb: {driver: mysql, host: db, name: m, user: u, dump_dir: /b, schedule: '@daily'}\n"))
	f.Add([]byte("role: web\nedge: ~\nmirror: {target: /var/www/x, max_lag: 1h30m, keep: 2}\nx: &a [1]\ny: *a\n"))
	f.Add([]byte("role: [web]\ngossip: {join: 7}\nmirror: {keep: two}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data)
		if err != nil {
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				if !strings.HasPrefix(err.Error(), "yaml: ") {
					t.Fatalf("error neither a validation problem nor a YAML error: %v", err)
				}
				return
			}
			for _, p := range ve.Problems {
				if !problemLine.MatchString(p) || strings.IndexFunc(p, unicode.IsControl) >= 0 {
					t.Fatalf("problem is not one printable line starting with its key: %q", p)
				}
			}
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal an accepted config: %v", err)
		}
		back, err := config.Parse(out)
		if err != nil {
			t.Fatalf("an accepted config marshals to a refused one: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v\n%s", c, back, out)
		}
	})
}

// refSchedule is cron matching written the slow and obvious way: the
// oracle for Schedule.Next.
type refSchedule struct {
	fields           [5]string
	domStar, dowStar bool
}

var refLimits = [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}

var refNames = [5][]string{3: strings.Fields("jan feb mar apr may jun jul aug sep oct nov dec"), 4: strings.Fields("sun mon tue wed thu fri sat")}

var refMacros = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

func newRefSchedule(expr string) refSchedule {
	expr = strings.TrimSpace(expr)
	if m, ok := refMacros[strings.ToLower(expr)]; ok {
		expr = m
	}
	var r refSchedule
	copy(r.fields[:], strings.Fields(expr))
	r.domStar = strings.HasPrefix(r.fields[2], "*")
	r.dowStar = strings.HasPrefix(r.fields[4], "*")
	return r
}

// value reads a number or a name of field i.
func refValue(i int, s string) int {
	for j, n := range refNames[i] {
		if strings.EqualFold(s, n) {
			return refLimits[i][0] + j
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return v
}

// matches reports whether v matches field i.
func (r refSchedule) matches(i, v int) bool {
	for part := range strings.SplitSeq(r.fields[i], ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			step, _ = strconv.Atoi(stepText)
		}
		lo, hi := refLimits[i][0], refLimits[i][1]
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			lo = refValue(i, a)
			switch {
			case isRange:
				hi = refValue(i, b)
			case !hasStep:
				hi = lo
			}
		}
		if v >= lo && v <= hi && (v-lo)%step == 0 {
			return true
		}
	}
	return false
}

func (r refSchedule) day(t time.Time) bool {
	dow := int(t.Weekday())
	dom, wd := r.matches(2, t.Day()), r.matches(4, dow) || dow == 0 && r.matches(4, 7)
	if r.domStar || r.dowStar {
		return dom && wd && r.matches(3, int(t.Month()))
	}
	return (dom || wd) && r.matches(3, int(t.Month()))
}

func (r refSchedule) at(t time.Time) bool {
	return r.day(t) && r.matches(1, t.Hour()) && r.matches(0, t.Minute())
}

// next is the first matching minute after t (UTC), day by day, within the
// nine years Schedule.Next looks ahead.
func (r refSchedule) next(t time.Time) time.Time {
	t = t.Truncate(time.Minute).Add(time.Minute)
	limit := t.AddDate(9, 0, 0)
	for day := t.Truncate(24 * time.Hour); day.Before(limit); day = day.AddDate(0, 0, 1) {
		if !r.day(day) {
			continue
		}
		m := day
		if m.Before(t) {
			m = t
		}
		for ; m.Before(day.AddDate(0, 0, 1)) && m.Before(limit); m = m.Add(time.Minute) {
			if r.at(m) {
				return m
			}
		}
	}
	return time.Time{}
}

// FuzzParseSchedule: a schedule ParseSchedule accepts fires, in UTC,
// exactly when the slow reference says; in a zone with daylight saving it
// fires after the given time, on a minute that matches, and never twice on
// the same wall-clock minute.
func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"22 2 * * *", "*/15 9-17 * * mon-fri", "0 0 29 2 *", "30 2 * * *", "@weekly",
		"0 0 1,15 * 5", "5/20 */3 */2 jan-mar,oct 7", "0 0 30 2 *", "1,,2 * * * *"} {
		f.Add(s, int64(1741568400)) // 2025-03-10
	}
	f.Add("30 2 * * *", int64(1743289200)) // 2025-03-30, the spring jump in Berlin
	f.Add("30 2 * * *", int64(1761433200)) // 2025-10-26, the autumn repeat
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, expr string, unix int64) {
		s, err := config.ParseSchedule(expr)
		if err != nil {
			return
		}
		from := time.Unix(unix%(200*365*86400), 0).UTC() // 1770 to 2170
		ref := newRefSchedule(expr)
		if got, want := s.Next(from), ref.next(from); !got.Equal(want) {
			t.Fatalf("Next(%s) = %s, the reference says %s", from, got, want)
		}
		local := from.In(berlin)
		n := s.Next(local)
		if n.IsZero() {
			return
		}
		if !n.After(local) || n.Second() != 0 || !ref.at(n) {
			t.Fatalf("Next(%s) = %s: not a later matching minute", local, n)
		}
		if n2 := s.Next(n); !n2.IsZero() && n2.Format("2006-01-02 15:04") == n.Format("2006-01-02 15:04") {
			t.Fatalf("fires twice at %s (%s and %s)", n.Format("2006-01-02 15:04"), n, n2)
		}
	})
}
