package main_test

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listenNotify is a stand-in for systemd's notification socket.
func listenNotify(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

// nextNotice waits (generously) for the next datagram that is not an fd
// store message (FDSTORE=1 carries the listening sockets: see
// TestProcessRestartUnderSystemd).
func nextNotice(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	buf, oob := make([]byte, 4096), make([]byte, 1024)
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		closeRights(oob[:oobn])
		if msg := string(buf[:n]); !strings.HasPrefix(msg, "FDSTORE=1") {
			return msg
		}
	}
}

// closeRights closes the fds a message carried.
func closeRights(oob []byte) {
	msgs, _ := syscall.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		fds, _ := syscall.ParseUnixRights(&m)
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}
}

// TestProcessSystemdNotify: under a Type=notify unit, `run` says READY=1
// once its API answers, and STOPPING=1 when told to stop, then leaves and
// exits 0.
func TestProcessSystemdNotify(t *testing.T) {
	pc := newProcCluster(t)
	if err := os.MkdirAll(pc.source, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := pc.writeConfig("controller", "controller")
	conn, sock := listenNotify(t)
	cmd := exec.Command(binary, "run", "-config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("agent log:\n%s", tail(log.String(), 3000))
		}
	})

	if msg := nextNotice(t, conn); !strings.Contains(msg, "READY=1") {
		t.Fatalf("first notice %q, want READY=1", msg)
	}
	// No retry: READY means the API already answers.
	resp, err := http.Get("http://" + pc.ctlAPI + "/healthz")
	if err != nil {
		t.Fatalf("API after READY=1: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz after READY=1: %d", resp.StatusCode)
	}

	cmd.Process.Signal(syscall.SIGINT)
	if msg := nextNotice(t, conn); !strings.Contains(msg, "STOPPING=1") {
		t.Fatalf("notice after SIGINT %q, want STOPPING=1", msg)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("agent still running 60s after SIGINT")
	}
}
