package main

import (
	"fmt"
	"net"
	"os"
)

// notifier tells systemd about the service's state (sd_notify(3)) through
// the datagram socket named by $NOTIFY_SOCKET, which a unit with
// Type=notify sets. Without the variable it does nothing.
type notifier struct{ addr string }

// newNotifier reads $NOTIFY_SOCKET and removes it from the environment, so
// the commands the agent runs (after_switch, deploy -run) cannot speak for
// it.
func newNotifier() notifier {
	addr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	if len(addr) > 0 && addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	return notifier{addr: addr}
}

// notify sends state, e.g. "READY=1" or "STOPPING=1".
func (n notifier) notify(state string) error {
	if n.addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}
