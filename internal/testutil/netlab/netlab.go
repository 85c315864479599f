// Package netlab builds small networks of Linux network namespaces for
// multi-host tests and the fault-injection suite: one hub namespace holding
// a bridge, and one namespace per node whose eth0 is a port of the bridge.
// It cuts and heals links, drops one direction of traffic, limits rates,
// and delays and loses packets; it runs code and dials inside a node's
// namespace. The root namespace's interfaces and routes are never touched,
// and every name carries a random suffix so that parallel runs never meet.
//
// Only tests and benchmarks use it; it needs root, ip (iproute2), and for
// Block and Impair iptables.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrUnavailable wraps the reason a lab cannot be built on this machine.
var ErrUnavailable = errors.New("network namespaces unavailable")

// Available reports why a lab cannot be built here, or nil. tools are the
// commands needed besides ip (e.g. "iptables", "tc").
func Available(tools ...string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: they need root", ErrUnavailable)
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: the %s command is missing", ErrUnavailable, tool)
		}
	}
	return nil
}

// Lab is a set of namespaces on one bridge.
type Lab struct {
	Hub    string // the namespace of the bridge
	Subnet string // "10.213.N": nodes are .10, .11, ...

	nodes map[string]*Node

	mu       sync.Mutex
	created  []string // namespaces, in creation order
	impaired map[string]*impairment
}

// Node is one host of the lab.
type Node struct {
	Name string
	NS   string // its network namespace
	Addr string // its IPv4 address on the lab subnet
	port string // its bridge port in the hub
}

// New creates the hub and a namespace per node. On error, what was made is
// removed.
func New(nodes ...string) (_ *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	l := &Lab{
		Hub:      "na-hub-" + suffix,
		Subnet:   fmt.Sprintf("10.213.%d", rand.IntN(256)),
		nodes:    map[string]*Node{},
		impaired: map[string]*impairment{},
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := l.addNamespace(l.Hub); err != nil {
		return nil, err
	}
	if err := l.ipAll([][]string{
		{"-n", l.Hub, "link", "add", "br0", "type", "bridge"},
		{"-n", l.Hub, "link", "set", "br0", "up"},
	}); err != nil {
		return nil, err
	}
	for i, name := range nodes {
		if err := l.addNode(i, name, suffix); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *Lab) addNamespace(ns string) error {
	if err := run("ip", "netns", "add", ns); err != nil {
		return err
	}
	l.mu.Lock()
	l.created = append(l.created, ns)
	l.mu.Unlock()
	return run("ip", "-n", ns, "link", "set", "lo", "up")
}

func (l *Lab) addNode(i int, name, suffix string) error {
	short := strings.NewReplacer("controller", "ctl", "web-", "w", "-", "").Replace(name)
	n := &Node{
		Name: name,
		NS:   fmt.Sprintf("na-%s-%s", short, suffix),
		Addr: fmt.Sprintf("%s.%d", l.Subnet, 10+i),
		port: fmt.Sprintf("p%d", i),
	}
	if err := l.addNamespace(n.NS); err != nil {
		return err
	}
	l.nodes[name] = n
	return l.ipAll([][]string{
		{"-n", l.Hub, "link", "add", n.port, "type", "veth", "peer", "name", "eth0", "netns", n.NS},
		{"-n", l.Hub, "link", "set", n.port, "master", "br0"},
		{"-n", l.Hub, "link", "set", n.port, "up"},
		{"-n", n.NS, "addr", "add", n.Addr + "/24", "dev", "eth0"},
		{"-n", n.NS, "link", "set", "eth0", "up"},
	})
}

func (l *Lab) ipAll(cmds [][]string) error {
	for _, args := range cmds {
		if err := run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the impairments and removes every namespace (their links go
// with them). It returns the first error.
func (l *Lab) Close() error {
	l.mu.Lock()
	imps := l.impaired
	l.impaired = map[string]*impairment{}
	created := l.created
	l.created = nil
	l.mu.Unlock()
	var errs []error
	for _, imp := range imps {
		errs = append(errs, imp.stop())
	}
	for i := len(created) - 1; i >= 0; i-- {
		errs = append(errs, run("ip", "netns", "del", created[i]))
	}
	return errors.Join(errs...)
}

// Node returns the node called name; it panics for an unknown name (a bug
// of the test).
func (l *Lab) Node(name string) *Node {
	n, ok := l.nodes[name]
	if !ok {
		panic("netlab: no node " + name)
	}
	return n
}

// Names returns the names of the lab's nodes, sorted.
func (l *Lab) Names() []string {
	names := make([]string, 0, len(l.nodes))
	for name := range l.nodes {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Addr is the lab address of node name.
func (l *Lab) Addr(name string) string { return l.Node(name).Addr }

// Cut takes node's bridge port down: its cable is pulled, both ways.
func (l *Lab) Cut(name string) error {
	return run("ip", "-n", l.Hub, "link", "set", l.Node(name).port, "down")
}

// Heal puts node's bridge port back up.
func (l *Lab) Heal(name string) error {
	return run("ip", "-n", l.Hub, "link", "set", l.Node(name).port, "up")
}

// Block makes node drop every packet that comes from the node from: an
// asymmetric partition (node still reaches from; nothing from answers).
func (l *Lab) Block(name, from string) error {
	return l.iptables(name, "-A", "INPUT", "-s", l.Addr(from), "-j", "DROP")
}

// Unblock undoes Block.
func (l *Lab) Unblock(name, from string) error {
	return l.iptables(name, "-D", "INPUT", "-s", l.Addr(from), "-j", "DROP")
}

func (l *Lab) iptables(name string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", l.Node(name).NS, "iptables", "-w"}, args...)...)
}

// LimitRate limits what node sends to rate (tc's syntax, e.g. "80mbit").
func (l *Lab) LimitRate(name, rate string) error {
	return run("ip", "netns", "exec", l.Node(name).NS, "tc", "qdisc", "replace", "dev", "eth0", "root",
		"tbf", "rate", rate, "burst", "256kb", "latency", "200ms")
}

// Unlimit removes LimitRate's limit.
func (l *Lab) Unlimit(name string) error {
	return run("ip", "netns", "exec", l.Node(name).NS, "tc", "qdisc", "del", "dev", "eth0", "root")
}

// Command returns a command that runs name with args inside node's
// namespace (`ip netns exec` execs it: signals reach the program itself).
func (l *Lab) Command(node, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.Node(node).NS, name}, args...)...)
}

// Do runs f on an OS thread that has entered node's namespace: sockets f
// creates belong to it, and keep belonging to it when used from any other
// goroutine afterwards. The thread is discarded after f: it never runs
// other goroutines in the wrong namespace. f must not start goroutines
// that create sockets.
func (l *Lab) Do(node string, f func() error) error {
	ns := l.Node(node).NS
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		h, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		err = unix.Setns(int(h.Fd()), unix.CLONE_NEWNET)
		h.Close()
		if err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// DialContext returns a dial function whose connections start in node's
// namespace, for an http.Transport.
func (l *Lab) DialContext(node string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := l.Do(node, func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
}

// Listen listens on addr inside node's namespace.
func (l *Lab) Listen(node, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := l.Do(node, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
