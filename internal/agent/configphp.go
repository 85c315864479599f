package agent

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// configPHPSetting is one value a database move writes into Moodle's
// config.php.
type configPHPSetting struct {
	key   string // dbhost, dbname, dbuser, dbpass, or dbport (in $CFG->dboptions)
	value string
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

// rewriteConfigPHP sets the given values in config.php, keeping every
// other byte; it fails, changing nothing, if a line is missing or appears
// more than once. The file is replaced atomically with its mode and owner.
func rewriteConfigPHP(path string, set []configPHPSetting) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := editConfigPHP(data, set)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if bytes.Equal(out, data) {
		return nil
	}
	return durable.ReplaceFile(path, out)
}

func editConfigPHP(data []byte, set []configPHPSetting) ([]byte, error) {
	for _, s := range set {
		re := configPHPLine(s.key)
		n := len(re.FindAllIndex(data, -1))
		switch {
		case n == 0 && s.key == "dbport":
			return nil, fmt.Errorf("no 'dbport' => line in $CFG->dboptions to set the port %s; add one", s.value)
		case n == 0:
			return nil, fmt.Errorf("no $CFG->%s = '...'; line to rewrite", s.key)
		case n > 1:
			return nil, fmt.Errorf("%d lines set %s; expected one", n, s.key)
		}
		value := phpQuote(s.value)
		if s.key == "dbport" {
			if _, err := strconv.Atoi(s.value); err != nil {
				return nil, fmt.Errorf("port %q is not a number", s.value)
			}
			value = s.value
		}
		data = re.ReplaceAllFunc(data, func(line []byte) []byte {
			m := re.FindSubmatch(line)
			return bytes.Join([][]byte{m[1], []byte(value), m[3]}, nil)
		})
	}
	return data, nil
}
