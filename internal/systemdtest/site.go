package systemdtest

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/loadtest"
	"github.com/nodeagent/nodeagent/internal/nspawn"
)

// Addresses inside the machine: the web node's are the package's defaults.
const (
	EdgeURL  = "https://127.0.0.1:443"
	ReadyURL = "https://127.0.0.1:7947/readyz" // the web node's cluster API
	ctlAPI   = "http://127.0.0.1:7958"
)

const webConfig = `node: web-1
role: web
gossip: {bind: 127.0.0.1:7946, join: [127.0.0.1:7956]}
cluster: {listen: 127.0.0.1:7947}
mirror: {target: /var/www/html/moodle}
edge: {https: ":443", http: ":80", backend: "http://127.0.0.1:8080"}
`

const controllerConfig = `node: controller
role: controller
data_dir: /var/lib/controller
gossip: {bind: 127.0.0.1:7956, key_file: /etc/nodeagent/gossip.key}
cluster: {listen: 127.0.0.1:7957}
api: {listen: 127.0.0.1:7958, token_file: /etc/nodeagent/api.token}
mirror: {source: /srv/moodle}
`

// Site is a web node (the package's unit) and a controller (a transient
// unit) in a machine, with the loadtest backend behind the edge.
type Site struct {
	M *nspawn.Machine
}

// Setup writes the configs, keys and a small code tree (as cloud-init
// would, before the package) and starts the backend. helper is the
// loadhelper binary on the host.
func Setup(ctx context.Context, m *nspawn.Machine, helper string) (*Site, error) {
	s := &Site{M: m}
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	files := map[string]string{
		"etc/nodeagent/nodeagent.yaml": webConfig,
		"etc/nodeagent/gossip.key":     key + "\n",
		"etc/nodeagent/api.token":      "systemd-test-token\n",
		"etc/controller.yaml":          controllerConfig,
		"srv/moodle/index.php":         "<?php echo 'hello';\n",
		"srv/moodle/config.php":        "<?php $CFG = new stdClass();\n",
	}
	for name, body := range files {
		if err := s.write(name, body, 0o600); err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(helper)
	if err != nil {
		return nil, err
	}
	if err := s.write("usr/local/bin/loadhelper", string(b), 0o755); err != nil {
		return nil, err
	}
	_, err = m.Output(ctx, "systemd-run", "--unit=backend", "/usr/local/bin/loadhelper", "backend", "127.0.0.1:8080")
	return s, err
}

// write puts a file into the machine's root.
func (s *Site) write(name, body string, mode os.FileMode) error {
	path := filepath.Join(s.M.Dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(body), mode)
}

// Install installs (or upgrades to) the package deb with dpkg, the way an
// operator does; its postinst starts or restarts the unit.
func (s *Site) Install(ctx context.Context, deb string) error {
	b, err := os.ReadFile(deb)
	if err != nil {
		return err
	}
	name := "root/" + filepath.Base(deb)
	if err := s.write(name, string(b), 0o644); err != nil {
		return err
	}
	_, err = s.M.Output(ctx, "dpkg", "-i", "--force-confold", "/"+name)
	return err
}

// StartController runs a controller (a copy of the installed binary, as a
// transient unit) and publishes the tree; then waits until the web node
// serves it.
func (s *Site) StartController(ctx context.Context) error {
	steps := [][]string{
		{"cp", "/usr/bin/nodeagent", "/usr/local/bin/nodeagent-controller"},
		{"systemd-run", "--unit=controller", "/usr/local/bin/nodeagent-controller", "run", "-config", "/etc/controller.yaml"},
	}
	for _, args := range steps {
		if _, err := s.M.Output(ctx, args...); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := s.M.Output(ctx, "nodeagent", "publish", "-addr", ctlAPI, "-token-file", "/etc/nodeagent/api.token", "-m", "systemd test")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err := s.M.Output(ctx, "nodeagent", "wait", "-timeout", "2m")
	return err
}

// Show returns a property of the nodeagent unit (systemctl show).
func (s *Site) Show(ctx context.Context, prop string) (string, error) {
	out, err := s.M.Output(ctx, "systemctl", "show", "-P", prop, "nodeagent")
	return strings.TrimSpace(string(out)), err
}

// MainPID is the agent's PID inside the machine.
func (s *Site) MainPID(ctx context.Context) (int, error) {
	v, err := s.Show(ctx, "MainPID")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

// WaitActive waits until the unit is active with a main PID other than
// old (0: any).
func (s *Site) WaitActive(ctx context.Context, old int) (int, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		state, _ := s.Show(ctx, "ActiveState")
		pid, err := s.MainPID(ctx)
		if err == nil && state == "active" && pid != 0 && pid != old {
			return pid, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("unit not active with a new PID (state %q, pid %d, old %d)", state, pid, old)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Load is the loadtest client running inside the machine.
type Load struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	errb  strings.Builder
	lines chan string
}

// StartLoad starts `loadhelper load` against the web node's edge and
// /readyz.
func (s *Site) StartLoad(ctx context.Context, workers int, slow time.Duration) (*Load, error) {
	l := &Load{lines: make(chan string, 4)}
	l.cmd = s.M.Command(ctx, "/usr/local/bin/loadhelper", "load", "-edge", EdgeURL, "-probe", ReadyURL,
		"-workers", strconv.Itoa(workers), "-slow", slow.String())
	var err error
	if l.in, err = l.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := l.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	l.cmd.Stderr = &l.errb
	if err := l.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(l.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			l.lines <- sc.Text()
		}
	}()
	return l, nil
}

func (l *Load) read() (loadtest.Summary, error) {
	var sum loadtest.Summary
	select {
	case line, ok := <-l.lines:
		if !ok {
			return sum, fmt.Errorf("load ended: %s", l.errb.String())
		}
		return sum, json.Unmarshal([]byte(line), &sum)
	case <-time.After(time.Minute):
		return sum, fmt.Errorf("no answer from the load")
	}
}

// Snapshot returns the counts so far.
func (l *Load) Snapshot() (loadtest.Summary, error) {
	if _, err := io.WriteString(l.in, "snapshot\n"); err != nil {
		return loadtest.Summary{}, err
	}
	return l.read()
}

// WaitProgress waits until the load answered more requests (fast, slow
// and probes) than in before.
func (l *Load) WaitProgress(before loadtest.Summary) (loadtest.Summary, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		now, err := l.Snapshot()
		if err != nil {
			return now, err
		}
		if now.OK >= before.OK+20 && now.SlowOK > before.SlowOK && now.ProbeOK > before.ProbeOK {
			return now, nil
		}
		if time.Now().After(deadline) {
			return now, fmt.Errorf("no progress: %+v", now)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the load and returns its summary.
func (l *Load) Stop() (loadtest.Summary, error) {
	l.in.Close()
	sum, err := l.read()
	l.cmd.Wait()
	return sum, err
}
