package packaging_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Markers that tell what the web server did with a file. A PHP file of the
// tree prints executedMarker only when it runs (its source spells it in
// two pieces), and every file's text holds sourceMarker, which a response
// shows only when the file was handed out as text.
const (
	executedMarker = "EXECUTED "
	sourceMarker   = "SOURCE-TEXT "
)

// moodleFiles is a small tree with Moodle's layout: the scripts a site
// serves, a theme image, and the internal files Moodle's security check
// (core\check\environment\publicpaths) and the issue name, each where
// Moodle has it.
var moodleFiles = []string{
	// Served.
	"index.php",
	"admin/index.php",
	"course/view.php",
	"pluginfile.php",
	"theme/image.php",
	"theme/styles.php",
	"repository/repository_ajax.php",
	"config.php",
	"theme/boost/pix/favicon.ico",
	".well-known/security.txt",
	"lib/classes/component.php", // a directory without index.php
	// Never served nor executed.
	"vendor/autoload.php",
	"vendor/bin/behat",
	"admin/tool/pluginskel/vendor/autoload.php",
	"node_modules/cli/cli.js",
	".git/HEAD",
	".git/config",
	".github/FUNDING.yml",
	".stylelintrc",
	".upgradenotes/MDL-1-2024.yml",
	".config.php.swp",
	"composer.json",
	"composer.lock",
	"package.json",
	"npm-shrinkwrap.json",
	"Gruntfile.js",
	"README.txt",
	"UPGRADING.md",
	"UPGRADING-CURRENT.md",
	"reportbuilder/UPGRADING.md",
	"phpunit.xml.dist",
	"config-dist.php",
	"config.php~",
	"config.php.bak",
	"admin/environment.xml",
	"admin/cli/upgrade.php",
	"lib/db/install.xml",
	"lib/thirdpartylibs.xml",
	"lib/upgrade.txt",
	"lib/scssphp/readme_moodle.txt",
	"lib/tests/fixtures/testable_flexible_table.php",
	"lib/tests/weblib_test.php",
	"mod/README.txt",
	"mod/book/README.md",
	"mod/resource/readme.txt",
	"mod/assign/db/install.xml",
	"auth/manual/upgrade.txt",
	"privacy/tests/fixtures/logo.png",
	"enrol/lti/tests/fixtures/input.xml",
	"blog/tests/behat/delete.feature",
}

// release is one release directory of the tree, named like the agent's
// (releases/<id>).
type release struct {
	name string // "A", "B": printed by its PHP files
	dir  string // the real path
}

// moodleSite is the docroot as nodeagent lays it out on a web node: a
// target symlink pointing at one of the release directories.
type moodleSite struct {
	target string // the symlink nginx's root names
	a, b   release
	hits   string // each run of a PHP file appends a byte to a file here
	gates  string // a slow page waits for its gate file here
}

// newMoodleSite writes releases A and B under root and points the target
// at A. B differs from A: its PHP files print "B", its theme image has
// other bytes, mod/old/ is gone and mod/new/ is added. Files are read-only
// as in the agent's releases.
func newMoodleSite(tb testing.TB, root string) *moodleSite {
	tb.Helper()
	s := &moodleSite{
		target: filepath.Join(root, "www/html/moodle"),
		hits:   filepath.Join(root, "hits"),
		gates:  filepath.Join(root, "gates"),
	}
	// 0777: PHP-FPM's workers run as www-data when the test runs as root.
	mustMkdir(tb, s.hits, 0o777)
	mustMkdir(tb, s.gates, 0o755)
	rel := filepath.Join(root, "lib/nodeagent/mirror/releases")
	s.a = s.writeRelease(tb, filepath.Join(rel, "a1"+strings.Repeat("0", 62)), "A", "mod/old/index.php")
	s.b = s.writeRelease(tb, filepath.Join(rel, "b2"+strings.Repeat("0", 62)), "B", "mod/new/index.php")
	mustMkdir(tb, filepath.Dir(s.target), 0o755)
	s.switchTo(tb, s.a)
	return s
}

func (s *moodleSite) writeRelease(tb testing.TB, dir, name, extra string) release {
	tb.Helper()
	for _, f := range append(moodleFiles, extra) {
		var body []byte
		switch {
		case strings.HasSuffix(f, ".php"):
			body = []byte(phpScript(f, name, s.hits, s.gates))
		case f == "theme/boost/pix/favicon.ico":
			body = []byte("\x00\x00\x01\x00 icon of release " + name)
		default:
			body = []byte(sourceMarker + f + "\n")
		}
		p := filepath.Join(dir, f)
		mustMkdir(tb, filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, body, 0o444); err != nil {
			tb.Fatal(err)
		}
	}
	return release{name: name, dir: dir}
}

// switchTo points the target at r as the agent does (internal/mirror,
// switchTo): a new symlink renamed over the old one, so a request resolves
// the whole old or the whole new release.
func (s *moodleSite) switchTo(tb testing.TB, r release) {
	tb.Helper()
	tmp := s.target + ".tmp-switch"
	if err := os.Symlink(r.dir, tmp); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, s.target); err != nil {
		tb.Fatal(err)
	}
}

func hitName(rel string) string { return strings.ReplaceAll(rel, "/", "_") }

// phpScript is the PHP file rel of release name: it records that it ran,
// waits for the gate the query names in wait, if any (a slow page), then
// prints the
// executed marker, the release and what PHP was told about the request, one "KEY=value" a line.
func phpScript(rel, name, hits, gates string) string {
	return fmt.Sprintf(`<?php
// %[1]s%[2]s
file_put_contents(%[3]q, "x", FILE_APPEND);
$until = microtime(true) + 60;
while (isset($_GET['wait']) && !file_exists(%[5]q . '/' . basename($_GET['wait'])) && microtime(true) < $until) {
    usleep(10000); // a slow page, until the test opens the gate
}
header('Content-Type: text/plain');
echo 'EXEC', 'UTED ', %[2]q, "\n";
echo 'RELEASE=', %[4]q, "\n";
foreach (['SCRIPT_FILENAME', 'SCRIPT_NAME', 'DOCUMENT_ROOT', 'PATH_INFO', 'QUERY_STRING',
        'REMOTE_ADDR', 'HTTP_HOST', 'CONTENT_LENGTH'] as $k) {
    echo $k, '=', $_SERVER[$k] ?? '', "\n";
}
echo 'BODY_BYTES=', strlen(file_get_contents('php://input')), "\n";
echo 'OPCACHE_ENABLE=', ini_get('opcache.enable'), "\n";
echo 'OPCACHE_VALIDATE_TIMESTAMPS=', ini_get('opcache.validate_timestamps'), "\n";
echo 'OPCACHE_CACHED=', function_exists('opcache_is_script_cached') && opcache_is_script_cached(__FILE__) ? 1 : 0, "\n";
`, sourceMarker, rel, filepath.Join(hits, hitName(rel)), name, gates)
}

func mustMkdir(tb testing.TB, dir string, mode os.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		tb.Fatal(err)
	}
}

// runs counts the runs of PHP files so far.
func (s *moodleSite) runs(tb testing.TB) int64 {
	tb.Helper()
	ents, err := os.ReadDir(s.hits)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			tb.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// realPath resolves every symlink of p.
func realPath(tb testing.TB, p string) string {
	tb.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
