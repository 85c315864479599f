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
