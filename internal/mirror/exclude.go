package mirror

import (
	"fmt"
	"path"
	"strings"
)

// excluder decides which paths of the source tree a publish leaves out.
//
// A pattern is a path.Match glob. One that contains a "/" (a leading one
// anchors it, as in .gitignore) matches the whole slash-separated path
// relative to the source root; one without matches the base name at any
// depth. A trailing "/" restricts a pattern to directories. An excluded
// directory is skipped whole.
type excluder struct {
	rules []excludeRule
}

type excludeRule struct {
	glob    string
	whole   bool // match the whole relative path, not the base name
	dirOnly bool
}

// newExcluder compiles patterns, rejecting malformed globs.
func newExcluder(patterns []string) (*excluder, error) {
	ex := &excluder{}
	for _, p := range patterns {
		r := excludeRule{glob: p}
		if strings.HasSuffix(r.glob, "/") {
			r.dirOnly = true
			r.glob = strings.TrimRight(r.glob, "/")
		}
		if strings.Contains(r.glob, "/") {
			r.whole = true
			r.glob = strings.TrimPrefix(r.glob, "/")
		}
		if r.glob == "" {
			return nil, fmt.Errorf("exclude pattern %q matches nothing", p)
		}
		if _, err := path.Match(r.glob, ""); err != nil {
			return nil, fmt.Errorf("exclude pattern %q: %w", p, err)
		}
		ex.rules = append(ex.rules, r)
	}
	return ex, nil
}

// excluded reports whether the entry at rel (relative, slash-separated) with
// base name base is left out.
func (ex *excluder) excluded(rel, base string, dir bool) bool {
	for i := range ex.rules {
		r := &ex.rules[i]
		if r.dirOnly && !dir {
			continue
		}
		name := base
		if r.whole {
			name = rel
		}
		if ok, _ := path.Match(r.glob, name); ok {
			return true
		}
	}
	return false
}
