package moodle_test

import (
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/moodle"
)

const configPHP = `<?php
$CFG->dbhost    = 'old';
$CFG->dbpass    = 'x';
$CFG->dboptions = array (
  'dbport' => 5432,
);
`

func TestEditConfig(t *testing.T) {
	out, err := moodle.EditConfig([]byte(configPHP), []moodle.Setting{
		{Key: "dbhost", Value: "db2"}, {Key: "dbpass", Value: `it's\`}, {Key: "dbport", Value: "6432"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer("'old'", "'db2'", "'x'", `'it\'s\\'`, "5432", "6432").Replace(configPHP)
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	for _, bad := range [][]moodle.Setting{
		{{Key: "dbname", Value: "m"}},    // no such line
		{{Key: "dbport", Value: "five"}}, // not a number
	} {
		if _, err := moodle.EditConfig([]byte(configPHP), bad); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
	if _, err := moodle.EditConfig([]byte(configPHP+"$CFG->dbhost = 'again';\n"), []moodle.Setting{{Key: "dbhost", Value: "h"}}); err == nil {
		t.Error("two dbhost lines: accepted")
	}
}

func TestDBChanges(t *testing.T) {
	from := []byte(strings.ReplaceAll(configPHP, "'old'", "'10.0.0.9'") + "$CFG->dbname = 'moodle';\n$CFG->prefix = 'mdl_';\n")
	to := []byte(strings.NewReplacer("'old'", "'10.0.0.5'", "'x'", "'secret'", "5432", "6432").Replace(configPHP) +
		"$CFG->dbname = 'moodle';\n$CFG->prefix = 'mdl_';\n")
	got := moodle.DBChanges(from, to)
	want := []string{"$CFG->dbhost '10.0.0.9' → '10.0.0.5'", "$CFG->dbpass differs", "'dbport' in $CFG->dboptions 5432 → 6432"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if strings.Contains(strings.Join(got, " "), "secret") {
		t.Fatal("a password was shown")
	}
	if got := moodle.DBChanges(from, from); len(got) != 0 {
		t.Fatalf("same file: %q", got)
	}
	if got := moodle.DBSettings(from); got["dbname"] != "'moodle'" || got["dbport"] != "5432" || got["prefix"] != "'mdl_'" {
		t.Fatalf("settings %q", got)
	}
}
