package dump

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// tempPrefix starts the names of temporary files (hidden; removed at Open).
const tempPrefix = ".nodeagent-tmp-"

// stampFormat is the UTC time in a dump's name.
const stampFormat = "20060102T150405Z"

// prefix is the database name made safe for a file name.
func (d *Dumper) prefix() string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, d.db.Name)
}

// namePattern matches the names of this Dumper's dumps, and nothing else.
func (d *Dumper) namePattern() *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(d.prefix()) + `-\d{8}T\d{6}Z(-\d+)?` + regexp.QuoteMeta(d.eng.ext()) + `$`)
}

// freeName names a dump started at t: NAME-20261127T022200Z.dump, with a
// -N suffix should that name be taken. Called with d.mu held.
func (d *Dumper) freeName(t time.Time) string {
	base := d.prefix() + "-" + t.UTC().Format(stampFormat)
	name := base + d.eng.ext()
	for i := 2; exists(filepath.Join(d.db.DumpDir, name)); i++ {
		name = fmt.Sprintf("%s-%d%s", base, i, d.eng.ext())
	}
	return name
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// scan lists the good dumps in dump_dir, oldest first: files with this
// Dumper's names whose sidecar exists and matches.
func (d *Dumper) scan() ([]Record, error) {
	entries, err := os.ReadDir(d.db.DumpDir)
	if err != nil {
		return nil, fmt.Errorf("list dumps: %w", err)
	}
	pat := d.namePattern()
	var recs []Record
	for _, e := range entries {
		if !e.Type().IsRegular() || !pat.MatchString(e.Name()) {
			continue
		}
		r, err := d.record(e.Name())
		if err != nil {
			d.log.Warn("dump without a valid sidecar (not counted, not removed)", "name", e.Name(), "err", err)
			continue
		}
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].Started.Equal(recs[j].Started) {
			return recs[i].Started.Before(recs[j].Started)
		}
		return recs[i].Name < recs[j].Name
	})
	return recs, nil
}

// record reads the sidecar of the dump name.
func (d *Dumper) record(name string) (Record, error) {
	data, err := os.ReadFile(sidecar(filepath.Join(d.db.DumpDir, name)))
	if err != nil {
		return Record{}, err
	}
	var m sidecarData
	if err := json.Unmarshal(data, &m); err != nil {
		return Record{}, fmt.Errorf("sidecar: %w", err)
	}
	if m.Name != name {
		return Record{}, fmt.Errorf("sidecar names %q", m.Name)
	}
	return Record{
		Name: name, Status: StatusOK, Driver: m.Driver, Database: m.Database, Trigger: m.Trigger,
		Started: m.Started, Seconds: m.Seconds, Size: m.Size, SHA256: m.SHA256,
	}, nil
}

// prune removes the oldest good dumps beyond db.keep. It runs only after a
// dump succeeded, so keep good dumps always remain.
func (d *Dumper) prune() error {
	recs, err := d.scan()
	if err != nil {
		return err
	}
	var errs []error
	for len(recs) > d.db.Keep {
		path := filepath.Join(d.db.DumpDir, recs[0].Name)
		if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		} else if err := os.Remove(sidecar(path)); err != nil {
			errs = append(errs, err)
		} else {
			d.log.Info("dump removed (retention)", "name", recs[0].Name, "keep", d.db.Keep)
		}
		recs = recs[1:]
	}
	return errors.Join(errs...)
}

// removeTemps deletes temporary files an interrupted dump left behind.
func (d *Dumper) removeTemps() error {
	matches, err := filepath.Glob(filepath.Join(d.db.DumpDir, tempPrefix+"*"))
	if err != nil {
		return err
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil {
			return err
		}
		d.log.Info("removed the temporary file of an interrupted dump", "file", filepath.Base(m))
	}
	return nil
}

// OpenDump opens the good dump name for reading, with its record. Names are
// checked against the dump name pattern: nothing else in dump_dir (and
// nothing outside it) can be opened.
func (d *Dumper) OpenDump(name string) (*os.File, Record, error) {
	if !d.namePattern().MatchString(name) {
		return nil, Record{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	r, err := d.record(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, Record{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, Record{}, err
	}
	f, err := os.Open(filepath.Join(d.db.DumpDir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, Record{}, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f, r, err
}
