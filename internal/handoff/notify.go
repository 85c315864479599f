package handoff

import (
	"fmt"
	"os"
	"syscall"
)

// Notifier tells systemd about the service (sd_notify(3)) through the
// datagram socket named by $NOTIFY_SOCKET, which a unit with Type=notify
// sets; it can pass file descriptors along (FDSTORE=1). Without the
// variable it does nothing.
type Notifier struct{ addr string }

// NewNotifier reads $NOTIFY_SOCKET and removes it from the environment, so
// the commands the agent runs (after_switch, deploy -run) cannot speak for
// it.
func NewNotifier() *Notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	return &Notifier{addr: addr}
}

// Enabled reports whether a service manager listens.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != "" }

// Socket is the $NOTIFY_SOCKET value, for a successor agent.
func (n *Notifier) Socket() string {
	if n == nil {
		return ""
	}
	return n.addr
}

// Notify sends state, e.g. "READY=1" or "STOPPING=1".
func (n *Notifier) Notify(state string) error { return n.send(state, nil) }

// Store puts fds into the unit's file-descriptor store under name
// (FDSTORE=1, FDNAME=name): systemd keeps them open while the service
// restarts and passes them back to the next process (LISTEN_FDS).
func (n *Notifier) Store(name string, fds ...int) error {
	return n.send("FDSTORE=1\nFDNAME="+name, fds)
}

// Remove closes every fd the store holds under name (FDSTOREREMOVE=1).
func (n *Notifier) Remove(name string) error {
	return n.send("FDSTOREREMOVE=1\nFDNAME="+name, nil)
}

// send writes one datagram with fds as SCM_RIGHTS. A connected socket
// cannot carry ancillary data through the net package, so this uses the
// system calls directly.
func (n *Notifier) send(state string, fds []int) error {
	if !n.Enabled() {
		return nil
	}
	name := n.addr
	if name[0] == '@' {
		name = "\x00" + name[1:] // abstract namespace
	}
	s, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer syscall.Close(s)
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if err := syscall.Sendmsg(s, []byte(state), oob, &syscall.SockaddrUnix{Name: name}, 0); err != nil {
		return fmt.Errorf("sd_notify %q: %w", firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
