package moodle

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// Setting is one value a database move writes into config.php.
type Setting struct {
	Key   string // dbhost, dbname, dbuser, dbpass, or dbport (in $CFG->dboptions)
	Value string
}

// configPHPLine finds the line that sets key: `$CFG->dbhost = '...';` or,
// for dbport, `'dbport' => ...,` inside $CFG->dboptions. Group 2 is the
// value to replace.
func configPHPLine(key string) *regexp.Regexp {
	if key == "dbport" {
		return regexp.MustCompile(`(?m)^(\s*['"]dbport['"]\s*=>\s*)('[^']*'|"[^"]*"|[0-9]*)(\s*,?[ \t]*(?://.*)?\r?)$`)
	}
	return regexp.MustCompile(`(?m)^(\s*\$CFG->` + key + `\s*=\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(\s*;.*\r?)$`)
}

// phpQuote returns s as a PHP single-quoted string.
func phpQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// RemoveConfigLeftovers removes what a crash while config.php was being
// rewritten left in the code tree dir: whole copies of config.php, the
// database password included, under names that do not end in .php, which
// the next publish would copy into every web node's docroot.
func RemoveConfigLeftovers(dir string) error {
	return durable.RemoveLeftovers(filepath.Join(dir, "config.php"))
}

// RewriteConfig sets the given values in config.php, keeping every
// other byte; it fails, changing nothing, if a line is missing or appears
// more than once. The file is replaced atomically with its mode and owner.
func RewriteConfig(path string, set []Setting) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := EditConfig(data, set)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(out, data) {
		return nil
	}
	return durable.ReplaceFile(path, out)
}

// EditConfig returns data, a config.php, with the given values set; it
// fails if a line is missing or appears more than once.
func EditConfig(data []byte, set []Setting) ([]byte, error) {
	for _, s := range set {
		re := configPHPLine(s.Key)
		n := len(re.FindAllIndex(data, -1))
		switch {
		case n == 0 && s.Key == "dbport":
			return nil, fmt.Errorf("no 'dbport' => line in $CFG->dboptions to set the port %s; add one", s.Value)
		case n == 0:
			return nil, fmt.Errorf("no $CFG->%s = '...'; line to rewrite", s.Key)
		case n > 1:
			return nil, fmt.Errorf("%d lines set %s; expected one", n, s.Key)
		}
		value := phpQuote(s.Value)
		if s.Key == "dbport" {
			if _, err := strconv.Atoi(s.Value); err != nil {
				return nil, fmt.Errorf("port %q is not a number", s.Value)
			}
			value = s.Value
		}
		data = re.ReplaceAllFunc(data, func(line []byte) []byte {
			m := re.FindSubmatch(line)
			return bytes.Join([][]byte{m[1], []byte(value), m[3]}, nil)
		})
	}
	return data, nil
}
