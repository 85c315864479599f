package packaging_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// The shipped examples and the machine-specific values in them that the
// test replaces; everything else runs as shipped.
const (
	shippedSite     = "nginx/moodle-nodeagent.conf"
	shippedListen   = "listen 127.0.0.1:8080;"
	shippedRoot     = "root /var/www/html/moodle;"
	shippedFPM      = "fastcgi_pass unix:/run/php/php8.2-fpm.sock;"
	shippedAccess   = "access_log /var/log/nginx/moodle-access.log"
	shippedErrorLog = "error_log /var/log/nginx/moodle-error.log;"
	shippedPHPGlob  = "php/*.ini"
	shippedOPcache  = "php/90-nodeagent-opcache.ini"
)

// webBinaries are Debian's nginx and PHP-FPM.
type webBinaries struct{ nginx, fpm string }

// findWebBinaries finds nginx and php-fpm, or skips the test (fails it with
// CI=true, where .ci/run installs them).
func findWebBinaries(tb testing.TB) webBinaries {
	tb.Helper()
	b := webBinaries{nginx: findBin("nginx", "/usr/sbin/nginx")}
	fpms, _ := filepath.Glob("/usr/sbin/php-fpm*")
	b.fpm = findBin("php-fpm", append(fpms, "/usr/sbin/php-fpm")...)
	if b.nginx == "" || b.fpm == "" {
		msg := "nginx or php-fpm not found; install them with: apt-get install -y nginx php-fpm"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	return b
}

// findBin returns the first existing path, else name from PATH, else "".
func findBin(name string, paths ...string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, _ := exec.LookPath(name)
	return p
}

// webStack is a real nginx and a real PHP-FPM, each its own instance
// (config, pid file, socket, logs in a temporary directory; not the
// system's services), serving the site of the shipped nginx example with
// the shipped PHP settings.
type webStack struct {
	addr      string // nginx: 127.0.0.1:port
	accessLog string
	nginxTest string // what nginx -t said
	fpm       *os.Process
	fpmLog    string
}

// startWebStack starts PHP-FPM and nginx for site under dir and stops them
// at cleanup. As root the workers run as www-data, as on a web node.
func startWebStack(tb testing.TB, bins webBinaries, dir string, site *moodleSite) *webStack {
	tb.Helper()
	runAs := ""
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("www-data"); err != nil {
			tb.Fatalf("running as root needs the www-data user: %v", err)
		}
		runAs = "www-data"
	}
	fpmDir := filepath.Join(dir, "php")
	fpm, socket := startFPM(tb, bins.fpm, fpmDir, runAs)
	s := startNginx(tb, bins.nginx, filepath.Join(dir, "nginx"), site.target, socket, runAs)
	s.fpm, s.fpmLog = fpm, filepath.Join(fpmDir, "fpm.log")
	return s
}

// startFPM starts PHP-FPM with one pool on a socket in dir, loading no
// php.ini but OPcache and the shipped packaging/php/*.ini, with the
// process_control_timeout these advise for php-fpm.conf. One worker, so
// every request meets the caches the previous ones filled.
func startFPM(tb testing.TB, bin, dir, runAs string) (master *os.Process, socket string) {
	tb.Helper()
	mustMkdir(tb, filepath.Join(dir, "conf.d"), 0o755)
	socket = filepath.Join(dir, "fpm.sock")
	pool := fmt.Sprintf(`[global]
pid = %[1]s/fpm.pid
error_log = %[1]s/fpm.log
daemonize = no
%[3]s

[moodle]
listen = %[2]s
listen.mode = 0660
pm = static
pm.max_children = 1
catch_workers_output = yes
`, dir, socket, advisedFPMGlobal(tb))
	if runAs != "" {
		pool += fmt.Sprintf("user = %[1]s\ngroup = %[1]s\nlisten.owner = %[1]s\nlisten.group = %[1]s\n", runAs)
	}
	writeFile(tb, filepath.Join(dir, "fpm.conf"), pool)
	writeFile(tb, filepath.Join(dir, "php.ini"), "")
	writeFile(tb, filepath.Join(dir, "conf.d/10-opcache.ini"), "zend_extension=opcache.so\n")
	inis, err := filepath.Glob(shippedPHPGlob)
	if err != nil || len(inis) == 0 {
		tb.Fatalf("no shipped %s: %v", shippedPHPGlob, err)
	}
	for _, ini := range inis {
		writeFile(tb, filepath.Join(dir, "conf.d", filepath.Base(ini)), readFile(tb, ini))
	}
	args := []string{"-y", filepath.Join(dir, "fpm.conf"), "-c", filepath.Join(dir, "php.ini")}
	test := exec.Command(bin, append(args, "-t")...)
	test.Env = append(os.Environ(), "PHP_INI_SCAN_DIR="+filepath.Join(dir, "conf.d"))
	if out, err := test.CombinedOutput(); err != nil {
		tb.Fatalf("php-fpm -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append(args, "-F")...)
	cmd.Env = test.Env
	master = startDaemon(tb, "php-fpm", cmd, filepath.Join(dir, "fpm.log"))
	waitDial(tb, "unix", socket)
	return master, socket
}

// advisedFPMGlobal returns the php-fpm.conf [global] setting the shipped
// OPcache example asks for in a comment ("process_control_timeout = 30s").
func advisedFPMGlobal(tb testing.TB) string {
	tb.Helper()
	const key = "process_control_timeout = "
	ini := readFile(tb, shippedOPcache)
	i := strings.Index(ini, key)
	if i < 0 {
		tb.Fatalf("%s no longer advises %s", shippedOPcache, strings.TrimSpace(key))
	}
	line, _, _ := strings.Cut(ini[i:], "\n")
	return line
}

// startNginx runs `nginx -t` on the shipped site, with its listen port,
// root, FPM socket and log paths replaced, then starts nginx with it.
func startNginx(tb testing.TB, bin, dir, root, socket, runAs string) *webStack {
	tb.Helper()
	mustMkdir(tb, filepath.Join(dir, "temp"), 0o755)
	s := &webStack{addr: testutil.FreeAddr(tb), accessLog: filepath.Join(dir, "access.log")}
	site := renderSite(tb, readFile(tb, shippedSite), [][2]string{
		{shippedListen, "listen " + s.addr + ";"},
		{shippedRoot, "root " + root + ";"},
		{shippedFPM, "fastcgi_pass unix:" + socket + ";"},
		{shippedAccess, "access_log " + s.accessLog},
		{shippedErrorLog, "error_log " + filepath.Join(dir, "error.log") + " info;"},
	})
	writeFile(tb, filepath.Join(dir, "moodle-nodeagent.conf"), site)
	main := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
%[2]s
events { worker_connections 128; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log %[1]s/other-access.log;
    client_body_temp_path %[1]s/temp/body;
    fastcgi_temp_path %[1]s/temp/fastcgi;
    proxy_temp_path %[1]s/temp/proxy;
    scgi_temp_path %[1]s/temp/scgi;
    uwsgi_temp_path %[1]s/temp/uwsgi;
    include %[1]s/moodle-nodeagent.conf;
}
`, dir, userDirective(runAs))
	writeFile(tb, filepath.Join(dir, "nginx.conf"), main)
	args := []string{"-p", dir + "/", "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")}
	out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput()
	if err != nil {
		tb.Fatalf("nginx -t on the shipped %s: %v\n%s", shippedSite, err, out)
	}
	s.nginxTest = string(out)
	startDaemon(tb, "nginx", exec.Command(bin, args...), filepath.Join(dir, "error.log"))
	waitDial(tb, "tcp", s.addr)
	return s
}

// nginxTestStock runs `nginx -t` on the shipped site as Debian's own
// /etc/nginx/nginx.conf includes it from sites-enabled, unchanged but for
// the log and pid paths, moved into dir: nginx -t opens logs, but binds no
// port, opens no FPM socket and reads no root.
func nginxTestStock(tb testing.TB, bin, dir string) string {
	tb.Helper()
	moveLogs := strings.NewReplacer("/var/log/nginx/", dir+"/", "/run/nginx.pid", dir+"/nginx.pid")
	site := filepath.Join(dir, "moodle-nodeagent.conf")
	writeFile(tb, site, moveLogs.Replace(readFile(tb, shippedSite)))
	const sites = "include /etc/nginx/sites-enabled/*;"
	stock := readFile(tb, "/etc/nginx/nginx.conf")
	if strings.Count(stock, sites) != 1 {
		tb.Fatalf("/etc/nginx/nginx.conf has no %q", sites)
	}
	main := filepath.Join(dir, "nginx.conf")
	writeFile(tb, main, moveLogs.Replace(strings.Replace(stock, sites, "include "+site+";", 1)))
	out, err := exec.Command(bin, "-t", "-e", filepath.Join(dir, "error.log"), "-c", main).CombinedOutput()
	if err != nil {
		tb.Fatalf("nginx -t on the shipped %s in Debian's nginx.conf: %v\n%s", shippedSite, err, out)
	}
	return string(out)
}

func userDirective(runAs string) string {
	if runAs == "" {
		return ""
	}
	return "user " + runAs + ";"
}

// renderSite replaces each pair's first string, which must occur exactly
// once in the shipped file, and refuses a result that still names a system
// path the test instance must not touch.
func renderSite(tb testing.TB, shipped string, pairs [][2]string) string {
	tb.Helper()
	for _, p := range pairs {
		if n := strings.Count(shipped, p[0]); n != 1 {
			tb.Fatalf("%s: %q occurs %d times, want once (update the test with the example)", shippedSite, p[0], n)
		}
		shipped = strings.Replace(shipped, p[0], p[1], 1)
	}
	for line := range strings.Lines(shipped) {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		for _, sys := range []string{"/var/", "/run/"} {
			if strings.Contains(line, sys) {
				tb.Fatalf("%s: %q would make the test touch the system's nginx", shippedSite, line)
			}
		}
	}
	return shipped
}

// startDaemon starts a server in the foreground of cmd, in a process
// group of its own with its workers, and stops it at cleanup (SIGQUIT:
// graceful for both nginx and PHP-FPM; after 10 s SIGKILL to the group).
// Its output and log go to the test log when the test failed.
func startDaemon(tb testing.TB, name string, cmd *exec.Cmd, logFile string) *os.Process {
	tb.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second // workers holding the output open
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			tb.Errorf("%s did not stop within 10 s of SIGQUIT", name)
		}
		if tb.Failed() {
			log, _ := os.ReadFile(logFile)
			tb.Logf("%s output:\n%s\n%s:\n%s", name, out.String(), logFile, log)
		}
	})
	return cmd.Process
}

// waitDial polls until addr accepts a connection.
func waitDial(tb testing.TB, network, addr string) {
	tb.Helper()
	testutil.Eventually(tb, 30*time.Second, func() error {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

func readFile(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func writeFile(tb testing.TB, name, content string) {
	tb.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}
