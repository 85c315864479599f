// Package nspawn boots a Debian 12 root under real systemd in a
// systemd-nspawn container with its own network namespace (only
// loopback), for the tests and benchmarks that check the package and its
// unit against systemd itself. The root is made once by debootstrap and
// cached; each machine boots a copy. Root only; never touches the host's
// interfaces. The product never imports it.
package nspawn

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Packages installed in the root besides debootstrap's minbase.
var Packages = []string{"systemd", "systemd-sysv", "dbus", "procps"}

// Available reports why machines cannot boot here ("" when they can):
// root, debootstrap and systemd-nspawn are needed.
func Available() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not installed (apt-get install debootstrap systemd-container)"
		}
	}
	return ""
}

// DefaultCache is where the root is cached: $NODEAGENT_NSPAWN_CACHE, or
// nodeagent/nspawn-bookworm under the user's cache directory.
func DefaultCache() string {
	if d := os.Getenv("NODEAGENT_NSPAWN_CACHE"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "nodeagent", "nspawn-bookworm")
}

// EnsureRoot returns the cached root under cache, building it with
// debootstrap first if it is missing (about a minute; one builder at a
// time, others wait on a lock).
func EnsureRoot(ctx context.Context, cache string, log io.Writer) (string, error) {
	root := filepath.Join(cache, "root")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", cache, err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/lib/systemd/systemd")); err == nil {
		return root, nil
	}
	tmp := filepath.Join(cache, "building")
	os.RemoveAll(tmp)
	fmt.Fprintf(log, "nspawn: debootstrap bookworm into %s\n", tmp)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Packages, ","), "bookworm", tmp)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return "", err
	}
	return root, nil
}

// Machine is a booted container.
type Machine struct {
	Name string
	Dir  string // its root on the host
	cmd  *exec.Cmd
	done chan error
	pid  int // the container's systemd, as seen from the host
}

// Boot copies root to dir and boots it: systemd-nspawn -b with a private
// network, not registered with machined (no system bus needed), in the
// caller's unit. It returns once systemd in the container finished
// booting. log gets the console.
func Boot(ctx context.Context, root, dir string, log io.Writer) (*Machine, error) {
	if out, err := exec.CommandContext(ctx, "cp", "-a", root, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copy root: %v: %s", err, out)
	}
	m := &Machine{Name: "na-" + randomSuffix(), Dir: dir, done: make(chan error, 1)}
	m.cmd = exec.Command("systemd-nspawn", "--quiet", "--register=no", "--keep-unit",
		"--private-network", "-M", m.Name, "-D", dir, "-b")
	m.cmd.Stdout, m.cmd.Stderr = log, log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("systemd-nspawn: %w", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	if err := m.waitBooted(ctx); err != nil {
		m.Kill()
		os.RemoveAll(dir)
		return nil, err
	}
	return m, nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// waitBooted finds the container's PID 1 and waits until systemd reports
// running (or degraded: a unit a minimal root cannot start).
func (m *Machine) waitBooted(ctx context.Context) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-m.done:
			m.done <- err
			return fmt.Errorf("systemd-nspawn exited while booting: %v", err)
		default:
		}
		if m.pid == 0 {
			m.pid = m.leader()
		}
		if m.pid != 0 {
			out, _ := m.Output(ctx, "systemctl", "is-system-running")
			if s := strings.TrimSpace(string(out)); s == "running" || s == "degraded" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("the container did not finish booting in 2 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// leader is the container's systemd: the child of systemd-nspawn.
func (m *Machine) leader() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", m.cmd.Process.Pid, m.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) == "systemd" {
				return pid
			}
		}
	}
	return 0
}

// Command returns a command that runs inside the container (all its
// namespaces, its root).
func (m *Machine) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"-t", strconv.Itoa(m.pid), "-m", "-u", "-i", "-n", "-p", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	return cmd
}

// Output runs args inside the container and returns stdout and stderr.
func (m *Machine) Output(ctx context.Context, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := m.Command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return out.Bytes(), err
}

// Close powers the container off (systemctl poweroff), kills it if it is
// still up after a minute, and removes its root.
func (m *Machine) Close() error {
	if m.pid != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		m.Output(ctx, "systemctl", "poweroff")
		cancel()
	}
	select {
	case <-m.done:
	case <-time.After(time.Minute):
		m.Kill()
	}
	return os.RemoveAll(m.Dir)
}

// Kill ends systemd-nspawn (and with it the container) at once.
func (m *Machine) Kill() {
	syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.done
	m.done <- nil
}
