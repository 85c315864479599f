package moodle

import (
	"fmt"
	"regexp"
	"slices"
)

// dbSettingLine matches the config.php lines that tie a code tree to a
// database: $CFG->dbtype, dblibrary, dbhost, dbname, dbuser, dbpass and
// prefix, and 'dbport' and 'dbsocket' in $CFG->dboptions. Group 1 or 3 is
// the name, 2 or 4 the value as written.
var dbSettingLine = regexp.MustCompile(`(?m)^\s*\$CFG->(dbtype|dblibrary|dbhost|dbname|dbuser|dbpass|prefix)\s*=\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^;]*?)\s*;` +
	`|^\s*['"](dbport|dbsocket)['"]\s*=>\s*('[^']*'|"[^"]*"|[0-9]+)`)

// DBSettings returns the database settings a config.php sets, by name
// (dbhost, dbport, …), each value as written in PHP.
func DBSettings(data []byte) map[string]string {
	out := map[string]string{}
	for _, m := range dbSettingLine.FindAllSubmatch(data, -1) {
		if len(m[1]) > 0 {
			out[string(m[1])] = string(m[2])
		} else {
			out[string(m[3])] = string(m[4])
		}
	}
	return out
}

// DBChanges lists the database settings that differ between two
// config.php, e.g. "$CFG->dbhost '10.0.0.9' → '10.0.0.5'". A password is
// named, never shown.
func DBChanges(from, to []byte) []string {
	a, b := DBSettings(from), DBSettings(to)
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		old, hadOld := a[k]
		cur, hasCur := b[k]
		if hadOld && hasCur && old == cur {
			continue
		}
		name := "$CFG->" + k
		if k == "dbport" || k == "dbsocket" {
			name = "'" + k + "' in $CFG->dboptions"
		}
		switch {
		case k == "dbpass":
			out = append(out, name+" differs")
		case !hadOld:
			out = append(out, fmt.Sprintf("%s set to %s", name, cur))
		case !hasCur:
			out = append(out, fmt.Sprintf("%s %s removed", name, old))
		default:
			out = append(out, fmt.Sprintf("%s %s → %s", name, old, cur))
		}
	}
	return out
}
