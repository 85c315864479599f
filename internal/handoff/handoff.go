// Package handoff keeps the agent's listening sockets (edge.https,
// edge.http, cluster.listen, api.listen) open across restarts and upgrades,
// so that clients and load-balancer probes are never refused while the
// agent restarts: connections that arrive meanwhile wait in the socket's
// accept queue until the next process accepts them.
//
// Two holders keep the sockets while no agent runs:
//   - systemd's file-descriptor store (FileDescriptorStoreMax= in the
//     unit): the agent stores each socket it binds (sd_notify FDSTORE=1,
//     named by its config key), and systemd passes them back at the next
//     start (LISTEN_FDS, LISTEN_FDNAMES) — after `systemctl restart`, a
//     package upgrade's restart, a crash or kill -9. `systemctl stop` ends
//     the unit and closes them.
//   - the agent itself, on a re-exec in place (SIGUSR2, for runs without
//     systemd): the sockets stay open across execve(2) of the binary now on
//     disk.
//
// Sockets are matched by name and checked against the configured address;
// one that no longer matches is closed and the configured address bound
// instead, never both. The package knows nothing of the agent's
// components: it hands out net.Listeners.
package handoff

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config configures Sockets.
type Config struct {
	// Notifier talks to systemd; nil or disabled = no fd store.
	Notifier *Notifier
	Logger   *slog.Logger
}

// Sockets hands out the listeners of one agent process: inherited ones
// where they match the config, newly bound ones otherwise.
type Sockets struct {
	notify *Notifier
	log    *slog.Logger

	mu     sync.Mutex
	spare  map[string][]*os.File // inherited, not claimed yet
	held   []heldSocket          // handed out, by name
	closed bool
}

// heldSocket is a socket handed out. The Sockets keep their own
// descriptor of it, so that it stays open for a re-exec after its listener
// is closed.
type heldSocket struct {
	name string
	file *os.File
}

// New returns Sockets. It does no I/O.
func New(cfg Config) *Sockets {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sockets{notify: cfg.Notifier, log: log.With("component", "sockets"), spare: map[string][]*os.File{}}
}

// Open takes the sockets passed to this process (systemd's LISTEN_FDS, or
// the agent's own after a re-exec) and clears those variables from the
// environment.
func (s *Sockets) Open() error {
	files, err := inherit()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spare = files
	if n := len(files); n > 0 {
		s.log.Info("sockets kept from the previous run", "names", slices.Sorted(maps.Keys(files)))
	}
	return nil
}

// Listen returns a TCP listener for the config key name and its address:
// the inherited socket of that name if it is bound to addr, else a new one
// (an inherited socket that does not match is closed first and removed from
// the fd store). Errors do not name the key; callers do.
func (s *Sockets) Listen(name, addr string) (net.Listener, error) {
	ln, replaced := s.adopt(name, addr)
	if ln == nil {
		var err error
		if ln, err = listen(addr, replaced); err != nil {
			return nil, err
		}
	}
	f, err := ln.File() // a descriptor of its own (close-on-exec)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.Close()
		f.Close()
		return nil, errors.New("sockets closed")
	}
	s.held = append(s.held, heldSocket{name: name, file: f})
	return ln, nil
}

// adopt returns an inherited socket that serves addr: the one kept under
// name, or, for an explicit port, one kept under another key (the config
// moved the port between keys: binding it anew would fail while the kept
// socket holds it, at every start). replaced reports that name's own
// socket did not match (and is now closed and out of the fd store).
func (s *Sockets) adopt(name, addr string) (ln *net.TCPListener, replaced bool) {
	if ln := s.take(name, name, addr); ln != nil {
		return ln, false
	}
	if _, port, err := net.SplitHostPort(addr); err == nil && port != "0" {
		for _, other := range s.spareNames() {
			if other == name {
				continue
			}
			if ln := s.take(other, name, addr); ln != nil {
				return ln, false
			}
		}
	}
	return nil, s.drop(name, addr)
}

func (s *Sockets) spareNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.spare))
}

// take claims the socket kept under from for the key name if it serves
// addr; one kept under another key leaves the fd store under that key
// (Store keeps it under name).
func (s *Sockets) take(from, name, addr string) *net.TCPListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	files := s.spare[from]
	if len(files) == 0 {
		return nil
	}
	ln, err := fileListener(files[0])
	if err != nil {
		return nil
	}
	if ok, err := serves(ln.Addr().(*net.TCPAddr), addr); err != nil || !ok {
		ln.Close()
		return nil
	}
	if len(files) > 1 {
		s.log.Warn("several sockets kept under one name: using the first", "name", from, "count", len(files))
	}
	delete(s.spare, from)
	closeFiles(files...)
	if from != name {
		s.log.Info("socket kept under another key now serves this one", "key", name, "was", from, "addr", ln.Addr().String())
		s.forget(from)
		return ln
	}
	s.log.Info("listening on the socket kept across the restart", "key", name, "addr", ln.Addr().String())
	return ln
}

// drop closes the socket kept under name, which does not serve addr, and
// removes it from the fd store; false when there was none.
func (s *Sockets) drop(name, addr string) bool {
	s.mu.Lock()
	files := s.spare[name]
	delete(s.spare, name)
	s.mu.Unlock()
	if len(files) == 0 {
		return false
	}
	reason := "not a listening TCP socket"
	if ln, err := fileListener(files[0]); err == nil {
		reason = fmt.Sprintf("it listens on %s, the config says %s", ln.Addr(), addr)
		ln.Close()
	}
	closeFiles(files...)
	s.log.Warn("socket kept from the previous run not used: closing it, binding the configured address",
		"key", name, "addr", addr, "reason", reason)
	s.forget(name)
	return true
}

// fileListener makes a listener of an inherited fd, which must be a
// listening TCP socket.
func fileListener(f *os.File) (*net.TCPListener, error) {
	err := withFD(f, func(fd int) error {
		acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil || acc == 0 {
			return errors.New("not a listening socket")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	l, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	ln, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("not a TCP socket: %s", l.Addr())
	}
	return ln, nil
}

// listen binds addr. After a kept socket was removed from the fd store,
// systemd may still hold it for a moment: an address in use is retried
// briefly then.
func listen(addr string, retry bool) (*net.TCPListener, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l.(*net.TCPListener), nil
		}
		if !retry || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// forget removes name from systemd's fd store.
func (s *Sockets) forget(name string) {
	if err := s.notify.Remove(name); err != nil {
		s.log.Warn("remove socket from the fd store", "name", name, "err", err)
	}
}

// Release closes the inherited sockets that no Listen claimed (a listener
// the config no longer has, e.g. edge.http set to "") and removes them from
// the fd store. Call it once every listener is open.
func (s *Sockets) Release() {
	s.mu.Lock()
	spare := s.spare
	s.spare = map[string][]*os.File{}
	s.mu.Unlock()
	for name, files := range spare {
		s.log.Info("socket kept from the previous run is not in the config: closing it", "name", name)
		closeFiles(files...)
		s.forget(name)
	}
}

// Store puts every socket handed out into systemd's fd store, so that it
// outlives this process. Sockets it already holds are not duplicated
// (systemd ignores an fd it has).
func (s *Sockets) Store() error {
	if !s.notify.Enabled() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, h := range s.held {
		if err := withFD(h.file, func(fd int) error { return s.notify.Store(h.name, fd) }); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.name, err))
		}
	}
	return errors.Join(errs...)
}

// Close closes this process's own descriptors of the sockets (the
// listeners handed out are their owners' to close): without a holder such
// as systemd's fd store, a socket is closed once its listener is too.
func (s *Sockets) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, files := range s.spare {
		closeFiles(files...)
	}
	for _, h := range s.held {
		h.file.Close()
	}
	s.spare, s.held = nil, nil
	return nil
}

func closeFiles(files ...*os.File) {
	for _, f := range files {
		f.Close()
	}
}
