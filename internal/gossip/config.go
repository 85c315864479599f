package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// KeySize is the length of the gossip key (AES-256-GCM).
const KeySize = 32

const (
	defaultBind        = "0.0.0.0:7946"
	defaultJoinBackoff = time.Second
	maxJoinBackoff     = 30 * time.Second
)

// Config configures a Gossip.
type Config struct {
	Name      string   // node name, unique in the cluster
	Bind      string   // host:port to listen on (tcp+udp); port 0 picks one; "" means 0.0.0.0:7946
	Advertise string   // IP or host[:port] others reach; "" derives it from Bind
	Join      []string // addresses to join, retried with backoff until one answers
	Key       []byte   // 32 bytes, required (AES-256-GCM)
	Keyring   *Keyring // when set, the keys used instead of Key (see keyring.go)
	Meta      NodeMeta // initial metadata
	// StateFile is where registers are persisted; "" keeps them in memory only.
	StateFile string
	Timing    Timing // zero fields take LAN defaults; TestTiming for tests
	// JoinBackoff is the first retry delay of the join loop (default 1s),
	// doubled up to 30s.
	JoinBackoff time.Duration
	Logger      *slog.Logger
	// StockQueues leaves memberlist's broadcast queues as they come, with
	// the bug that loses broadcasts (queuepin.go), and metadata to gossip
	// alone (no direct sends, metasend.go): bench/gossip measures against
	// it. Never set it otherwise.
	StockQueues bool
}

// hostPort is a parsed IP address and port.
type hostPort struct {
	ip   string
	port int
}

func (c Config) validate() error {
	if c.Name == "" {
		return errors.New("gossip: name is required")
	}
	if len(c.Key) == 0 {
		return errors.New("gossip: key is required")
	}
	if len(c.Key) != KeySize {
		return fmt.Errorf("gossip: key must be %d bytes, got %d", KeySize, len(c.Key))
	}
	return nil
}

// parseBind parses Bind; the host must be an IP address (or empty for all
// interfaces), since memberlist would otherwise silently listen everywhere.
func parseBind(s string) (hostPort, error) {
	if s == "" {
		s = defaultBind
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return hostPort{}, fmt.Errorf("gossip: bind %q: %w", s, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return hostPort{}, fmt.Errorf("gossip: bind %q: host must be an IP address", s)
	}
	return hostPort{ip: host, port: port}, nil
}

// resolveAdvertise parses Advertise, resolving a host name to an IP. A
// missing port is left 0 (the bound port is used).
func resolveAdvertise(ctx context.Context, s string) (hostPort, error) {
	if s == "" {
		return hostPort{}, nil
	}
	host, port := s, 0
	if h, p, err := splitHostPort(s); err == nil {
		host, port = h, p
	}
	if net.ParseIP(host) != nil {
		return hostPort{ip: host, port: port}, nil
	}
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return hostPort{}, fmt.Errorf("gossip: advertise %q: %w", s, err)
	}
	if len(ips) == 0 {
		return hostPort{}, fmt.Errorf("gossip: advertise %q: no address", s)
	}
	return hostPort{ip: ips[0].IP.String(), port: port}, nil
}

func splitHostPort(s string) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	return host, int(port), nil
}
