package packaging_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/edge"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestNginxPHP runs the shipped nginx and PHP examples in a real nginx and
// PHP-FPM (Debian's packages) on a tree with Moodle's layout behind a
// release symlink, and checks what a Moodle web node relies on.
func TestNginxPHP(t *testing.T) {
	bins := findWebBinaries(t)
	root := webRoot(t)
	site := newMoodleSite(t, root)
	stack := startWebStack(t, bins, root, site)

	t.Run("nginx -t", func(t *testing.T) { testNginxSyntax(t, bins, stack) })
	t.Run("served", func(t *testing.T) { testServed(t, stack, site) })
	t.Run("never served", func(t *testing.T) { testNeverServed(t, stack, site) })
	t.Run("edge", func(t *testing.T) { testBehindEdge(t, stack) })
	t.Run("OPTIONS * unlogged", func(t *testing.T) { testOptionsStar(t, stack, site) })
	t.Run("switch", func(t *testing.T) { testSwitch(t, stack, site) })
	t.Run("php-fpm reload", func(t *testing.T) { testReload(t, stack, site) })
}

// webRoot is the test's directory; as root it is opened to traversal
// (0711, like data_dir) for the www-data workers.
func webRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "nginx-php-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// testNginxSyntax: nginx -t passes on the example as the test runs it and
// as an operator installs it, and it listens where the edge looks.
func testNginxSyntax(t *testing.T, bins webBinaries, s *webStack) {
	for _, out := range []string{s.nginxTest, nginxTestStock(t, bins.nginx, t.TempDir())} {
		if !strings.Contains(out, "syntax is ok") || !strings.Contains(out, "test is successful") {
			t.Errorf("nginx -t said:\n%s", out)
		}
	}
	backend, err := url.Parse(config.DefaultEdge().Backend)
	if err != nil {
		t.Fatal(err)
	}
	if want := "listen " + backend.Host + ";"; shippedListen != want {
		t.Errorf("the example has %q, edge.backend's default wants %q", shippedListen, want)
	}
}

// testServed: the requests a Moodle site lives on reach the right script,
// with Moodle's slash arguments as PATH_INFO and real paths for PHP.
func testServed(t *testing.T, s *webStack, site *moodleSite) {
	real := realPath(t, site.a.dir)
	for _, tc := range []struct {
		path, script string            // script: the PHP file that must run
		want         map[string]string // what PHP must be told
	}{
		{"/", "index.php", map[string]string{
			"SCRIPT_FILENAME": real + "/index.php", "DOCUMENT_ROOT": real, "SCRIPT_NAME": "/index.php"}},
		{"/index.php?redirect=0", "index.php", map[string]string{"QUERY_STRING": "redirect=0"}},
		{"/admin/", "admin/index.php", map[string]string{"SCRIPT_FILENAME": real + "/admin/index.php"}},
		{"/course/view.php?id=42", "course/view.php", map[string]string{"QUERY_STRING": "id=42"}},
		{"/pluginfile.php/1/course/overviewfiles/x.png", "pluginfile.php", map[string]string{
			"SCRIPT_NAME": "/pluginfile.php", "PATH_INFO": "/1/course/overviewfiles/x.png",
			"SCRIPT_FILENAME": real + "/pluginfile.php"}},
		// A user's file whose path looks internal is the user's: only the
		// script part of a URL is checked.
		{"/pluginfile.php/12/mod_folder/content/0/tests/vendor/README.md", "pluginfile.php", map[string]string{
			"PATH_INFO": "/12/mod_folder/content/0/tests/vendor/README.md"}},
		{"/theme/image.php/boost/core/1700000000/i/grades", "theme/image.php", map[string]string{
			"SCRIPT_NAME": "/theme/image.php", "PATH_INFO": "/boost/core/1700000000/i/grades"}},
		{"/theme/styles.php/boost/1700000000_1/all", "theme/styles.php", map[string]string{
			"PATH_INFO": "/boost/1700000000_1/all"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := s.get(t, tc.path)
			got := r.executed(t, http.StatusOK, tc.script)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s=%q, want %q", k, got[k], v)
				}
			}
			if got["RELEASE"] != "A" {
				t.Errorf("ran release %q, want A", got["RELEASE"])
			}
		})
	}
	t.Run("theme image", func(t *testing.T) {
		r := s.get(t, "/theme/boost/pix/favicon.ico")
		want := readFile(t, filepath.Join(site.a.dir, "theme/boost/pix/favicon.ico"))
		if r.status != http.StatusOK || r.body != want || r.header.Get("Content-Type") != "image/x-icon" {
			t.Errorf("%d %s %q, want 200 image/x-icon %q", r.status, r.header.Get("Content-Type"), r.body, want)
		}
	})
	t.Run("well-known", func(t *testing.T) {
		if r := s.get(t, "/.well-known/security.txt"); r.status != http.StatusOK {
			t.Errorf("/.well-known/security.txt: %d, want 200", r.status)
		}
	})
	t.Run("directory redirect", func(t *testing.T) {
		// Relative: the client came through the edge on 443, not to 8080.
		r := s.get(t, "/admin")
		if r.status != http.StatusMovedPermanently || r.header.Get("Location") != "/admin/" {
			t.Errorf("/admin: %d Location %q, want 301 /admin/", r.status, r.header.Get("Location"))
		}
	})
	t.Run("upload", func(t *testing.T) {
		// Above nginx's default client_max_body_size (1 MiB).
		const size = 2 << 20
		r := s.do(t, http.MethodPost, "/repository/repository_ajax.php?action=upload",
			strings.NewReader(strings.Repeat("x", size)), nil)
		got := r.executed(t, http.StatusOK, "repository/repository_ajax.php")
		if got["BODY_BYTES"] != fmt.Sprint(size) {
			t.Errorf("PHP read %s bytes, want %d", got["BODY_BYTES"], size)
		}
	})
	t.Run("shipped opcache settings", func(t *testing.T) {
		got := s.get(t, "/index.php").executed(t, http.StatusOK, "index.php")
		if got["OPCACHE_ENABLE"] != "1" || got["OPCACHE_VALIDATE_TIMESTAMPS"] != "0" {
			t.Errorf("opcache.enable=%q validate_timestamps=%q: packaging/php not in effect",
				got["OPCACHE_ENABLE"], got["OPCACHE_VALIDATE_TIMESTAMPS"])
		}
	})
}

// neverServed are requests for internal files: every path Moodle's own
// security check (core\check\environment\publicpaths) expects to be 404,
// the ones of issue 11, and the same in disguise.
var neverServed = []string{
	"/vendor/",
	"/vendor",
	"/vendor/bin/behat",
	"/vendor/autoload.php",
	"/admin/tool/pluginskel/vendor/autoload.php",
	"/node_modules/",
	"/node_modules/cli/cli.js",
	"/.git/",
	"/.git/HEAD",
	"/.git/config",
	"/.github/FUNDING.yml",
	"/.stylelintrc",
	"/.upgradenotes/",
	"/.upgradenotes/MDL-1-2024.yml",
	"/.config.php.swp",
	"/composer.json",
	"/composer.lock",
	"/package.json",
	"/npm-shrinkwrap.json",
	"/Gruntfile.js",
	"/admin/environment.xml",
	"/doesnotexist",
	"/doesnotexist.php",
	"/lib/classes/",
	"/lib/db/install.xml",
	"/mod/assign/db/install.xml",
	"/lib/scssphp/readme_moodle.txt",
	"/mod/resource/readme.txt",
	"/mod/README.txt",
	"/mod/book/README.md",
	"/README.txt",
	"/auth/manual/upgrade.txt",
	"/lib/upgrade.txt",
	"/UPGRADING.md",
	"/UPGRADING-CURRENT.md",
	"/reportbuilder/UPGRADING.md",
	"/phpunit.xml.dist",
	"/privacy/tests/fixtures/logo.png",
	"/enrol/lti/tests/fixtures/input.xml",
	"/blog/tests/behat/delete.feature",
	"/lib/tests/fixtures/testable_flexible_table.php",
	"/lib/tests/weblib_test.php",
	"/admin/cli/upgrade.php",
	"/config-dist.php",
	"/config.php~",
	"/config.php.bak",
	"/lib/thirdpartylibs.xml",
	// Disguises: slash arguments, doubled slashes, dot segments, an
	// encoded slash or dot, another case, an image asked to run as PHP, and
	// the newline in PATH_INFO of CVE-2019-11043.
	"/lib/tests/fixtures/testable_flexible_table.php/x",
	"/admin/tool/pluginskel/vendor/autoload.php/x/y",
	"/lib/tests//fixtures/testable_flexible_table.php",
	"/lib/classes/../tests/fixtures/testable_flexible_table.php",
	"/lib/tests%2Ffixtures/testable_flexible_table.php",
	"/%2Egit/config",
	"/COMPOSER.JSON",
	"/theme/boost/pix/favicon.ico/x.php",
	"/index.php/PHP%0Ais_the_shittiest_lang.php",
}

// testNeverServed: each internal file answers 404 without being run or
// handed out, whatever the order of nginx's locations.
func testNeverServed(t *testing.T, s *webStack, site *moodleSite) {
	for _, path := range neverServed {
		t.Run(path, func(t *testing.T) {
			before := site.runs(t)
			r := s.get(t, path)
			if r.status != http.StatusNotFound {
				t.Errorf("status %d, want 404", r.status)
			}
			for _, leak := range []string{executedMarker, sourceMarker, "<?php", "Index of", "component.php"} {
				if strings.Contains(r.body, leak) {
					t.Errorf("body shows %q:\n%s", leak, r.body)
				}
			}
			if after := site.runs(t); after != before {
				t.Errorf("PHP ran")
			}
		})
	}
}

// testBehindEdge: through nodeagent's edge, PHP sees the client's address
// (X-Real-IP) and the site's host name; a peer other than the edge
// cannot claim an address.
func testBehindEdge(t *testing.T, s *webStack) {
	backend, _ := url.Parse("http://" + s.addr)
	trusted, _ := edge.ParsePrefixes([]string{"127.0.0.1/32"})
	e, err := edge.New(edge.Config{HTTP: "127.0.0.1:0", Backend: backend, TrustedProxies: trusted})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	e.Serve()
	t.Cleanup(func() { e.Close() })
	t.Run("readiness check", func(t *testing.T) {
		// edge:backend in /readyz: nginx answers OPTIONS * itself.
		if err := e.CheckBackend(context.Background()); err != nil {
			t.Errorf("edge:backend against the example: %v", err)
		}
	})
	t.Run("client address", func(t *testing.T) {
		// A load balancer in edge.trusted_proxies that terminated TLS.
		h := http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}}
		r := request(t, http.DefaultTransport, http.MethodGet, "http://"+e.HTTPAddr(), "/index.php?via-edge", "moodle.test", nil, h)
		got := r.executed(t, http.StatusOK, "index.php")
		if got["REMOTE_ADDR"] != "203.0.113.7" || got["HTTP_HOST"] != "moodle.test" {
			t.Errorf("REMOTE_ADDR=%q HTTP_HOST=%q, want 203.0.113.7 moodle.test", got["REMOTE_ADDR"], got["HTTP_HOST"])
		}
		s.waitLogged(t, "via-edge")
		if line := s.logLine(t, "via-edge"); !strings.HasPrefix(line, "203.0.113.7 ") {
			t.Errorf("access log: %s", line)
		}
	})
	t.Run("other peers", func(t *testing.T) {
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}
		defer tr.CloseIdleConnections()
		h := http.Header{"X-Real-IP": {"203.0.113.66"}}
		r := request(t, tr, http.MethodGet, "http://"+s.addr, "/index.php", "moodle.test", nil, h)
		if got := r.executed(t, http.StatusOK, "index.php"); got["REMOTE_ADDR"] != "127.0.0.2" {
			t.Errorf("REMOTE_ADDR=%q from 127.0.0.2 claiming 203.0.113.66, want 127.0.0.2", got["REMOTE_ADDR"])
		}
	})
}

// testOptionsStar: the edge's readiness request is answered by nginx
// without PHP and stays out of the access log, which keeps the rest.
func testOptionsStar(t *testing.T, s *webStack, site *moodleSite) {
	before := site.runs(t)
	c, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprint(c, "OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), executedMarker) {
		t.Errorf("OPTIONS *: %s\n%s", resp.Status, body)
	}
	if after := site.runs(t); after != before {
		t.Errorf("OPTIONS * ran PHP (%d runs, %d before)", after, before)
	}
	// nginx writes a request's log line when it ends, in order: once a
	// later request is in the log, the OPTIONS line would be too.
	s.get(t, "/index.php?after-options")
	s.waitLogged(t, "after-options")
	log := readFile(t, s.accessLog)
	if strings.Contains(log, "OPTIONS") {
		t.Errorf("OPTIONS * logged:\n%s", log)
	}
	if !strings.Contains(log, `"GET /composer.json HTTP/1.1" 404`) {
		t.Errorf("refused requests are not logged:\n%s", log)
	}
}

// testSwitch: with OPcache never checking timestamps, the request right
// after the agent switches the symlink runs the new release, and the one
// after a switch back runs the old one again.
func testSwitch(t *testing.T, s *webStack, site *moodleSite) {
	for range 3 { // fill OPcache and PHP's realpath cache with release A
		s.get(t, "/").executed(t, http.StatusOK, "index.php")
	}
	if got := s.get(t, "/").executed(t, http.StatusOK, "index.php"); got["OPCACHE_CACHED"] != "1" {
		t.Fatalf("index.php not in OPcache after three requests: %v", got)
	}
	for _, step := range []struct {
		to       release
		only, no string // a script only this release has, and one only the other has
	}{
		{site.b, "/mod/new/index.php", "/mod/old/index.php"},
		{site.a, "/mod/old/index.php", "/mod/new/index.php"},
	} {
		site.switchTo(t, step.to)
		real := realPath(t, step.to.dir)
		got := s.get(t, "/").executed(t, http.StatusOK, "index.php")
		if got["RELEASE"] != step.to.name || got["SCRIPT_FILENAME"] != real+"/index.php" || got["DOCUMENT_ROOT"] != real {
			t.Errorf("first request after the switch to %s ran release %s (%s, root %s)",
				step.to.name, got["RELEASE"], got["SCRIPT_FILENAME"], got["DOCUMENT_ROOT"])
		}
		if got := s.get(t, "/theme/image.php/boost/core/1/i/grades").executed(t, http.StatusOK, "theme/image.php"); got["RELEASE"] != step.to.name {
			t.Errorf("theme/image.php after the switch to %s: release %s", step.to.name, got["RELEASE"])
		}
		if r := s.get(t, "/theme/boost/pix/favicon.ico"); !strings.HasSuffix(r.body, "release "+step.to.name) {
			t.Errorf("theme image after the switch to %s: %q", step.to.name, r.body)
		}
		s.get(t, step.only).executed(t, http.StatusOK, strings.TrimPrefix(step.only, "/"))
		if r := s.get(t, step.no); r.status != http.StatusNotFound {
			t.Errorf("%s after the switch to %s: %d, want 404", step.no, step.to.name, r.status)
		}
	}
}

// testReload: after_switch's `systemctl reload php8.2-fpm` (SIGUSR2 to
// the master) lets a request in flight finish, given the
// process_control_timeout the PHP example advises (the default, 0, cuts it).
func testReload(t *testing.T, s *webStack, site *moodleSite) {
	before := site.runs(t)
	done := make(chan error, 1)
	var slow response
	go func() {
		var err error
		slow, err = send(http.DefaultTransport, http.MethodGet, "http://"+s.addr, "/course/view.php?id=7&wait=reload", "moodle.test", nil, nil)
		done <- err
	}()
	testutil.Eventually(t, 30*time.Second, func() error {
		if site.runs(t) == before {
			return errors.New("the slow request has not reached PHP")
		}
		return nil
	})
	if err := s.fpm.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(readFile(t, s.fpmLog), "Reloading in progress") {
			return errors.New("php-fpm has not begun its reload")
		}
		return nil
	})
	writeFile(t, filepath.Join(site.gates, "reload"), "") // the slow page may end now
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("request in flight during the reload: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("request in flight during the reload: no answer within a minute")
	}
	slow.executed(t, http.StatusOK, "course/view.php")
	testutil.Eventually(t, 30*time.Second, func() error {
		if n := strings.Count(readFile(t, s.fpmLog), "ready to handle connections"); n < 2 {
			return fmt.Errorf("php-fpm started %d times, want a reload", n)
		}
		return nil
	})
	s.get(t, "/index.php").executed(t, http.StatusOK, "index.php")
}
