package handoff

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Reexec replaces this process with the agent binary now on disk (the
// package's, after an upgrade), with the same arguments and PID, passing
// every socket handed out: the sockets stay open across execve(2), so no
// client is refused. Call it after the agent has closed (drained its
// listeners, left the cluster). It returns only on failure, with the
// sockets still held.
func (s *Sockets) Reexec(args []string) error {
	exe, err := os.Executable() // the path, even when the old file was replaced
	if err != nil {
		return fmt.Errorf("re-exec: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("re-exec: sockets closed")
	}
	var list []string
	for _, h := range s.held {
		err := withFD(h.file, func(fd int) error {
			list = append(list, h.name+"="+strconv.Itoa(fd))
			_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0) // keep it across execve
			return err
		})
		if err != nil {
			return fmt.Errorf("re-exec: keep %s open: %w", h.name, err)
		}
	}
	env := append(environWithout(envOwn, envOwnPID, "NOTIFY_SOCKET"),
		envOwn+"="+strings.Join(list, ","), envOwnPID+"="+strconv.Itoa(os.Getpid()))
	if sock := s.notify.Socket(); sock != "" {
		env = append(env, "NOTIFY_SOCKET="+sock)
	}
	err = syscall.Exec(exe, append([]string{exe}, args...), env)
	for _, h := range s.held {
		withFD(h.file, func(fd int) error { syscall.CloseOnExec(fd); return nil })
	}
	return fmt.Errorf("re-exec %s: %w", exe, err)
}

func environWithout(keys ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !slices.Contains(keys, k) {
			env = append(env, kv)
		}
	}
	return env
}

// withFD runs fn with f's descriptor. Unlike f.Fd, it leaves the
// descriptor's blocking mode alone: O_NONBLOCK belongs to the open socket,
// shared with the listener serving it.
func withFD(f *os.File, fn func(fd int) error) error {
	raw, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}
