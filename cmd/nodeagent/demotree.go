package main

import (
	"errors"
	"os"
	"path/filepath"
)

// writeDemoTree writes a small Moodle-like tree at dir unless dir exists
// (an edited demo tree is kept across runs).
func writeDemoTree(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	files := map[string]string{
		"index.php":                    "<?php\n// Moodle front page (nodeagent demo)\necho 'Hello from revision 1';\n",
		"config.php":                   "<?php\nunset($CFG);\nglobal $CFG;\n$CFG = new stdClass();\n$CFG->dbtype = 'pgsql';\n$CFG->dbhost = 'localhost';\n$CFG->dbname = 'moodle';\n$CFG->dbuser = 'moodle';\n$CFG->dbpass = 'demo-password';\n$CFG->wwwroot = 'https://moodle.test';\n$CFG->dataroot = '/moodle/moodledata';\nrequire_once(__DIR__ . '/lib/setup.php');\n",
		"version.php":                  "<?php\n$version = 2018051700.00;\n$release = '3.5 (Build: 20180517)';\n",
		"lib/setup.php":                "<?php\n// setup\n",
		"lib/weblib.php":               "<?php\n// weblib\n",
		"theme/boost/config.php":       "<?php\n$THEME->name = 'boost';\n",
		"theme/boost/style/moodle.css": "body { font-family: sans-serif; }\n",
		"admin/cli/upgrade.php":        "<?php\n// upgrade\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "admin/cli/upgrade.php"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "cache/empty"), 0o755); err != nil {
		return err
	}
	return os.Symlink("boost", filepath.Join(dir, "theme/default"))
}
