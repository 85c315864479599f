package handoff_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/handoff"
	"github.com/nodeagent/nodeagent/internal/testutil"
)

// notifySocket stands in for systemd's notification socket and returns
// the messages it received with the number of fds each carried.
type notifySocket struct {
	conn *net.UnixConn
	path string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sd")
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
	t.Setenv("NOTIFY_SOCKET", path)
	return &notifySocket{conn: conn, path: path}
}

// next returns the next message and how many fds came with it (closed).
func (n *notifySocket) next(t *testing.T) (string, int) {
	t.Helper()
	n.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf, oob := make([]byte, 4096), make([]byte, 1024)
	m, oobn, _, _, err := n.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	fds := 0
	msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
	for _, cm := range msgs {
		got, _ := syscall.ParseUnixRights(&cm)
		for _, fd := range got {
			syscall.Close(fd)
		}
		fds += len(got)
	}
	return string(buf[:m]), fds
}

// pass makes ln's socket look passed to this process by a re-exec (the
// agent's own protocol: any fd numbers), as name.
func pass(t *testing.T, entries map[string]net.Listener) {
	t.Helper()
	var list []string
	for name, ln := range entries {
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		raw, _ := f.SyscallConn()
		raw.Control(func(fd uintptr) { list = append(list, fmt.Sprintf("%s=%d", name, fd)) })
	}
	t.Setenv("NODEAGENT_LISTEN_FDS", strings.Join(list, ","))
	t.Setenv("NODEAGENT_LISTEN_PID", fmt.Sprint(os.Getpid()))
}

func listenLocal(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func inode(t *testing.T, ln net.Listener) uint64 {
	t.Helper()
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	raw.Control(func(fd uintptr) { syscall.Fstat(int(fd), &st) })
	return st.Ino
}

// A socket passed under its config key and bound to the configured
// address is reused (the same socket), one bound elsewhere is closed and
// the configured address bound instead, one the config no longer names is
// closed by Release; the variables are gone from the environment; the fd
// store is told what it must keep and forget.
func TestInheritMatchReplaceRelease(t *testing.T) {
	notify := newNotifySocket(t)
	kept, moved, gone := listenLocal(t), listenLocal(t), listenLocal(t)
	pass(t, map[string]net.Listener{"edge.https": kept, "edge.http": moved, "api.listen": gone})
	keptIno, movedAddr, goneAddr := inode(t, kept), moved.Addr().String(), gone.Addr().String()
	// Only the passed descriptors hold the sockets from now on.
	kept.Close()
	moved.Close()
	gone.Close()

	s := handoff.New(handoff.Config{Notifier: handoff.NewNotifier()})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, k := range []string{"NODEAGENT_LISTEN_FDS", "NODEAGENT_LISTEN_PID", "NOTIFY_SOCKET"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%s still in the environment (the agent's children would see it)", k, v)
		}
	}
	ln, err := s.Listen("edge.https", "127.0.0.1:0") // port 0: any port serves
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if inode(t, ln) != keptIno {
		t.Error("edge.https: a new socket, not the one passed")
	}

	other := testutil.FreeAddr(t) // the "changed" config
	ln2, err := s.Listen("edge.http", other)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	if ln2.Addr().String() != other {
		t.Errorf("edge.http on %s, want the configured %s", ln2.Addr(), other)
	}
	if msg, _ := notify.next(t); msg != "FDSTOREREMOVE=1\nFDNAME=edge.http" {
		t.Errorf("after a mismatch: %q, want the old socket removed from the fd store", msg)
	}
	refused(t, movedAddr)

	s.Release()
	if msg, _ := notify.next(t); msg != "FDSTOREREMOVE=1\nFDNAME=api.listen" {
		t.Errorf("after Release: %q", msg)
	}
	refused(t, goneAddr)

	if err := s.Store(); err != nil {
		t.Fatal(err)
	}
	var stored []string
	for range 2 {
		msg, fds := notify.next(t)
		if fds != 1 {
			t.Errorf("%q carried %d fds, want 1", msg, fds)
		}
		stored = append(stored, msg)
	}
	slices.Sort(stored)
	if want := []string{"FDSTORE=1\nFDNAME=edge.http", "FDSTORE=1\nFDNAME=edge.https"}; !slices.Equal(stored, want) {
		t.Errorf("stored %q, want %q", stored, want)
	}
}

func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Errorf("%s still accepts connections", addr)
	}
}

// Without inherited sockets Listen binds; a port in use is an error; the
// socket stays open after its listener closes, until Close (a re-exec
// passes it on).
func TestListenFresh(t *testing.T) {
	s := handoff.New(handoff.Config{})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen("api.listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if _, err := s.Listen("cluster.listen", addr); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second bind of %s: %v", addr, err)
	}
	ln.Close()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Errorf("socket closed with its listener: %v", err)
	} else {
		c.Close()
	}
	s.Close()
	refused(t, addr)
}

// TestPortMovedToAnotherKey: a port the config moved from one key to
// another (edge.http turned off and its port given to cluster.listen, or
// two keys swapping ports) is taken over under the new key, not bound
// anew: the kept socket holds the address, so a new bind failed, the
// start failed, and systemd, which passes the socket back at every start,
// restarted the agent into the same failure for ever.
func TestPortMovedToAnotherKey(t *testing.T) {
	notify := newNotifySocket(t)
	a, b := listenLocal(t), listenLocal(t)
	pass(t, map[string]net.Listener{"api.listen": a, "cluster.listen": b})
	aIno, bIno, aAddr, bAddr := inode(t, a), inode(t, b), a.Addr().String(), b.Addr().String()
	a.Close()
	b.Close()

	s := handoff.New(handoff.Config{Notifier: handoff.NewNotifier()})
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The two keys swap their ports.
	ln, err := s.Listen("api.listen", bAddr)
	if err != nil {
		t.Fatalf("api.listen on the port cluster.listen had: %v", err)
	}
	defer ln.Close()
	ln2, err := s.Listen("cluster.listen", aAddr)
	if err != nil {
		t.Fatalf("cluster.listen on the port api.listen had: %v", err)
	}
	defer ln2.Close()
	if inode(t, ln) != bIno || inode(t, ln2) != aIno {
		t.Error("a new socket, not the one kept for the port")
	}
	var msgs []string
	for range 2 {
		msg, _ := notify.next(t)
		msgs = append(msgs, msg)
	}
	slices.Sort(msgs)
	if want := []string{"FDSTOREREMOVE=1\nFDNAME=api.listen", "FDSTOREREMOVE=1\nFDNAME=cluster.listen"}; !slices.Equal(msgs, want) {
		t.Errorf("told the fd store %q, want %q (the sockets are stored anew under their new keys)", msgs, want)
	}
}
