package main_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fdStore stands in for systemd with a Type=notify unit and
// FileDescriptorStoreMax=: it receives the agent's sd_notify messages,
// keeps the sockets it stores (FDSTORE=1, FDNAME=, FDSTOREREMOVE=1) and
// starts the next process with them the way systemd does (LISTEN_FDS,
// LISTEN_FDNAMES, LISTEN_PID). The test under real systemd
// (packaging/systemd_test.go) checks the same against systemd 252.
type fdStore struct {
	t      *testing.T
	conn   *net.UnixConn
	sock   string
	mu     sync.Mutex
	stored []storedFD
	states chan string // the text of every message
	done   chan struct{}
}

type storedFD struct {
	name string
	file *os.File
}

func newFDStore(t *testing.T) *fdStore {
	t.Helper()
	conn, sock := listenNotify(t)
	s := &fdStore{t: t, conn: conn, sock: sock, states: make(chan string, 100), done: make(chan struct{})}
	go s.receive()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, f := range s.stored {
			f.file.Close()
		}
	})
	return s
}

func (s *fdStore) receive() {
	defer close(s.done)
	buf, oob := make([]byte, 4096), make([]byte, 4096)
	for {
		n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		s.handle(msg, s.files(oob[:oobn]))
		select {
		case s.states <- msg:
		default:
		}
	}
}

func (s *fdStore) files(oob []byte) []*os.File {
	msgs, _ := syscall.ParseSocketControlMessage(oob)
	var files []*os.File
	for _, m := range msgs {
		fds, _ := syscall.ParseUnixRights(&m)
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "stored"))
		}
	}
	return files
}

// handle applies FDSTORE/FDSTOREREMOVE; like systemd it ignores an fd it
// already holds.
func (s *fdStore) handle(msg string, files []*os.File) {
	vars := map[string]string{}
	for line := range strings.SplitSeq(msg, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case vars["FDSTORE"] == "1":
		for _, f := range files {
			if s.holds(f) {
				f.Close()
				continue
			}
			s.stored = append(s.stored, storedFD{name: vars["FDNAME"], file: f})
		}
		return
	case vars["FDSTOREREMOVE"] == "1":
		kept := s.stored[:0]
		for _, f := range s.stored {
			if f.name == vars["FDNAME"] {
				f.file.Close()
			} else {
				kept = append(kept, f)
			}
		}
		s.stored = kept
	}
	for _, f := range files {
		f.Close()
	}
}

func (s *fdStore) holds(f *os.File) bool {
	a, ok := fstat(f)
	for _, g := range s.stored {
		if b, ok2 := fstat(g.file); ok && ok2 && a.Ino == b.Ino && a.Dev == b.Dev {
			return true
		}
	}
	return false
}

// fstat stats f without f.Fd, which would make the socket, shared with
// the agent, blocking.
func fstat(f *os.File) (syscall.Stat_t, bool) {
	var st syscall.Stat_t
	raw, err := f.SyscallConn()
	if err != nil {
		return st, false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil || serr != nil {
		return st, false
	}
	return st, true
}

// queued returns how many connections wait in the accept queue of the
// stored socket name (for a listening socket, TCP_INFO's unacked).
func (s *fdStore) queued(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.stored {
		if f.name != name {
			continue
		}
		raw, err := f.file.SyscallConn()
		if err != nil {
			return -1
		}
		n := -1
		raw.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				n = int(info.Unacked)
			}
		})
		return n
	}
	return -1
}

// names lists the names of the stored fds.
func (s *fdStore) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, f := range s.stored {
		names = append(names, f.name)
	}
	return names
}

// start runs the agent for node as systemd would: the stored sockets from
// fd 3 on, with LISTEN_PID set to the agent's PID (by a shell that then
// execs it).
func (s *fdStore) start(pc *procCluster, node string) *exec.Cmd {
	s.t.Helper()
	s.mu.Lock() // until the process started: the files stay open
	defer s.mu.Unlock()
	var files []*os.File
	var names []string
	for _, f := range s.stored {
		files, names = append(files, f.file), append(names, f.name)
	}
	logf, err := os.OpenFile(filepath.Join(pc.dir, node+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("/bin/sh", "-c", `export LISTEN_PID=$$; exec "$0" "$@"`,
		binary, "run", "-config", filepath.Join(pc.dir, node+".yaml"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+s.sock,
		fmt.Sprintf("LISTEN_FDS=%d", len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	pc.procs[node] = cmd
	return cmd
}

// forget drops the messages received so far.
func (s *fdStore) forget() {
	for {
		select {
		case <-s.states:
		default:
			return
		}
	}
}

// waitState waits for a message containing want (e.g. "READY=1").
func (s *fdStore) waitState(want string) {
	s.t.Helper()
	deadline := time.After(90 * time.Second)
	for {
		select {
		case msg := <-s.states:
			if strings.Contains(msg, want) {
				return
			}
		case <-deadline:
			s.t.Fatalf("no %s from the agent", want)
		}
	}
}
