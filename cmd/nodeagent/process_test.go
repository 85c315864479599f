package main_test

// Process-level tests: the built binary as one controller and web processes,
// configured by files, driven through the CLI.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

var binary string

func TestMain(m *testing.M) { testutil.MainWithAgent(m, &binary) }

// handedOut holds the ports freePort returned: the kernel may offer a port
// again once its probe listener is closed, and two keys of one config (or
// two parallel tests) must never get the same one.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a port free for both TCP and UDP on 127.0.0.1, never the
// same one twice in a test binary.
func freePort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := 0; i < 200; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if handedOut.ports[port] {
			continue
		}
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// procCluster is a set of nodeagent processes sharing one directory.
type procCluster struct {
	t       *testing.T
	dir     string
	source  string
	key     string // key file
	token   string // token file
	ctlAPI  string
	ctlGoss string
	procs   map[string]*exec.Cmd
}

func newProcCluster(t *testing.T) *procCluster {
	t.Helper()
	dir := t.TempDir()
	pc := &procCluster{t: t, dir: dir, source: filepath.Join(dir, "source"), procs: map[string]*exec.Cmd{}}
	pc.key = filepath.Join(dir, "gossip.key")
	pc.token = filepath.Join(dir, "api.token")
	writeFile(t, pc.key, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n", 0o600)
	writeFile(t, pc.token, "process-test-token\n", 0o600)
	t.Cleanup(pc.stopAll)
	return pc
}

func writeFile(t *testing.T, name, body string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(body), perm); err != nil {
		t.Fatal(err)
	}
}

// currentUser is the test's user: the deploy.run_as of test controllers,
// whose commands write into the test's private directories.
func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func (pc *procCluster) target(node string) string {
	return filepath.Join(pc.dir, node, "www", "moodle")
}

func (pc *procCluster) dataDir(node string) string { return filepath.Join(pc.dir, node, "data") }

// writeConfig writes the config file of node and returns its path.
func (pc *procCluster) writeConfig(node, role string) string {
	pc.t.Helper()
	goss := fmt.Sprintf("127.0.0.1:%d", freePort(pc.t))
	api := fmt.Sprintf("127.0.0.1:%d", freePort(pc.t))
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\nrole: %s\ndata_dir: %s\nlog: {level: debug}\n", node, role, pc.dataDir(node))
	fmt.Fprintf(&b, "gossip:\n  bind: %s\n  key_file: %s\n", goss, pc.key)
	if role == "controller" {
		pc.ctlAPI, pc.ctlGoss = api, goss
		fmt.Fprintf(&b, "mirror:\n  source: %s\n  keep: 3\ndeploy: {run_as: %s}\n", pc.source, currentUser(pc.t))
	} else {
		fmt.Fprintf(&b, "  join: [%s]\nmirror:\n  target: %s\n  keep: 3\n", pc.ctlGoss, pc.target(node))
	}
	fmt.Fprintf(&b, "cluster: {listen: 127.0.0.1:%d}\napi: {listen: %s, token_file: %s}\n", freePort(pc.t), api, pc.token)
	path := filepath.Join(pc.dir, node+".yaml")
	writeFile(pc.t, path, b.String(), 0o644)
	return path
}

// start runs `nodeagent run` for node with its config file.
func (pc *procCluster) start(node string) {
	pc.t.Helper()
	pc.startBin(node, binary)
}

// startBin is start with another nodeagent binary.
func (pc *procCluster) startBin(node, bin string) {
	pc.t.Helper()
	cfg := filepath.Join(pc.dir, node+".yaml")
	logf, err := os.OpenFile(filepath.Join(pc.dir, node+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		pc.t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		pc.t.Fatal(err)
	}
	logf.Close()
	pc.procs[node] = cmd
}

func (pc *procCluster) kill(node string) {
	if cmd := pc.procs[node]; cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		delete(pc.procs, node)
	}
}

func (pc *procCluster) stopAll() {
	for node, cmd := range pc.procs {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if pc.t.Failed() {
			log, _ := os.ReadFile(filepath.Join(pc.dir, node+".log"))
			pc.t.Logf("log of %s (tail):\n%s", node, tail(string(log), 3000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// cli runs a CLI command against the controller and returns its output.
func (pc *procCluster) cli(args ...string) (string, error) {
	full := append([]string{args[0], "-addr", "http://" + pc.ctlAPI, "-token-file", pc.token, "-config", "/nonexistent"}, args[1:]...)
	out, err := exec.Command(binary, full...).CombinedOutput()
	return string(out), err
}

func (pc *procCluster) publish(msg string) string {
	pc.t.Helper()
	var out string
	var err error
	testutil.Eventually(pc.t, 10*time.Second, func() error {
		out, err = pc.cli("publish", "-m", msg)
		return err
	})
	return out
}

func (pc *procCluster) converged(nodes ...string) {
	pc.t.Helper()
	for _, n := range nodes {
		testutil.Eventually(pc.t, 30*time.Second, func() error {
			if d := mirrortest.DiffTrees(pc.source, pc.target(n)); d != nil {
				return fmt.Errorf("%s: %s", n, strings.Join(d, "; "))
			}
			return nil
		})
	}
}

// writeRandomTree writes n files of random sizes (up to maxSize) under root.
func writeRandomTree(t *testing.T, root string, n, maxSize int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed))
	buf := make([]byte, maxSize)
	for i := 0; i < n; i++ {
		name := filepath.Join(root, fmt.Sprintf("mod%02d/sub%d/file%04d.php", i%40, i%7, i))
		size := r.IntN(maxSize)
		for j := 0; j < size; j += 8 {
			v := r.Uint64()
			for k := 0; k < 8 && j+k < size; k++ {
				buf[j+k] = byte(v >> (8 * k))
			}
		}
		writeFile(t, name, string(buf[:size]), 0o644)
	}
}

func TestProcessClusterPublishAndConverge(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 300, 20000, 1)
	writeFile(t, filepath.Join(pc.source, "admin/cli/upgrade.php"), "<?php", 0o755)
	if err := os.Symlink("../mod00", filepath.Join(pc.source, "admin/mod")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(pc.source, "empty/dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	pc.writeConfig("controller", "controller")
	pc.writeConfig("web-1", "web")
	pc.writeConfig("web-2", "web")
	pc.start("controller")
	pc.start("web-1")
	pc.start("web-2")

	out := pc.publish("first")
	if !strings.Contains(out, "published: seq 1") {
		t.Fatalf("publish output: %s", out)
	}
	pc.converged("web-1", "web-2")

	writeFile(t, filepath.Join(pc.source, "mod01/sub1/file0001.php"), "<?php // changed", 0o644)
	out = pc.publish("second")
	if !strings.Contains(out, "published: seq 2") || !strings.Contains(out, "changed 1") {
		t.Fatalf("publish output: %s", out)
	}
	pc.converged("web-1", "web-2")

	out, err := pc.cli("status")
	if err != nil || !strings.Contains(out, "web-1") || !strings.Contains(out, "web-2") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = pc.cli("revisions")
	if err != nil || !strings.Contains(out, "second") {
		t.Fatalf("revisions: %v\n%s", err, out)
	}
}

// TestProcessSIGKILLDuringSync kills a web agent at random points of a sync:
// after every kill the target names one whole release, and after the last
// restart the node converges and no temporary file is left.
func TestProcessSIGKILLDuringSync(t *testing.T) {
	pc := newProcCluster(t)
	writeRandomTree(t, pc.source, 1500, 40000, 2)
	pc.writeConfig("controller", "controller")
	pc.writeConfig("web-1", "web")
	pc.start("controller")
	pc.start("web-1")
	pc.publish("first")
	t.Logf("%s done at %s", "publish first", time.Now().Format("15:04:05.000"))
	pc.converged("web-1")
	snap1 := filepath.Join(pc.dir, "snap1")
	if out, err := exec.Command("cp", "-a", pc.source, snap1).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}

	pc.kill("web-1")
	t.Logf("%s done at %s", "kill web-1", time.Now().Format("15:04:05.000"))
	writeRandomTree(t, pc.source, 1500, 40000, 3) // every file changes
	pc.publish("second")
	t.Logf("%s done at %s", "publish second", time.Now().Format("15:04:05.000"))

	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	for i := 0; i < 6; i++ {
		pc.start("web-1")
		time.Sleep(time.Duration(100+r.IntN(700)) * time.Millisecond)
		pc.kill("web-1")
		t.Logf("kill %d at %s", i, time.Now().Format("15:04:05.000"))
		d1 := mirrortest.DiffTrees(snap1, pc.target("web-1"))
		d2 := mirrortest.DiffTrees(pc.source, pc.target("web-1"))
		if d1 != nil && d2 != nil {
			t.Fatalf("kill %d: target is neither release:\nvs first: %v\nvs second: %v", i, d1, d2)
		}
	}
	pc.start("web-1")
	t.Logf("last start at %s", time.Now().Format("15:04:05.000"))
	pc.converged("web-1")
	t.Logf("converged at %s", time.Now().Format("15:04:05.000"))
	testutil.Eventually(t, 10*time.Second, func() error {
		for _, pattern := range []string{
			filepath.Join(pc.dataDir("web-1"), "mirror", "*", ".tmp-*"),
			pc.target("web-1") + ".tmp-*",
		} {
			if m, _ := filepath.Glob(pattern); len(m) > 0 {
				return fmt.Errorf("temporary files left: %v", m)
			}
		}
		return nil
	})
}

func TestProcessBadConfigNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"mirror.kep":      "role: web\ngossip: {key_file: /x}\nmirror: {kep: 3, target: /tmp/x}\n",
		"role":            "role: edge\ngossip: {key_file: /x}\n",
		"gossip.key_file": "role: controller\ndata_dir: " + dir + "\ngossip: {key_file: " + filepath.Join(dir, "missing.key") + "}\nmirror: {source: " + dir + "}\napi: {token_file: " + filepath.Join(dir, "tok") + "}\n",
		// A moodledata the controller cannot write into (here: missing).
		"maintenance.moodle_dataroot": "role: controller\ndata_dir: " + dir + "\ngossip: {key_file: " + filepath.Join(dir, "good.key") +
			"}\nmirror: {source: " + dir + "}\napi: {token_file: " + filepath.Join(dir, "tok") + "}\nmaintenance: {moodle_dataroot: " + filepath.Join(dir, "no-moodledata") + "}\n",
	}
	writeFile(t, filepath.Join(dir, "tok"), "tok\n", 0o600)
	writeFile(t, filepath.Join(dir, "good.key"), base64.StdEncoding.EncodeToString(make([]byte, 32))+"\n", 0o600)
	for key, body := range cases {
		t.Run(key, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(key, ".", "_")+".yaml")
			writeFile(t, path, body, 0o644)
			cmd := exec.Command(binary, "run", "-config", path)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), key) {
				t.Fatalf("error does not name %s:\n%s", key, out)
			}
		})
	}
}

func TestProcessCLIUsage(t *testing.T) {
	out, err := exec.Command(binary, "frobnicate").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("unknown command: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "nodeagent ") {
		t.Fatalf("version: %v %s", err, out)
	}
	out, err = exec.Command(binary, "keygen").CombinedOutput()
	key, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(out)))
	if err != nil || len(key) != 32 {
		t.Fatalf("keygen: %v %q", err, out)
	}
}
