package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"
)

// The driver talks to each worker process over its stdin and stdout, one
// JSON object per line: requests down, replies up, matched by id. A watch's
// reply comes when every node of the worker met the condition (or at its
// deadline), so replies may come out of order.

// request is one command to a worker.
type request struct {
	ID    int64      `json:"id"`
	Op    string     `json:"op"` // open, set, bump, watch, traffic, close
	Open  *openSpec  `json:"open,omitempty"`
	Node  string     `json:"node,omitempty"`
	Key   string     `json:"key,omitempty"`   // set
	Value int64      `json:"value,omitempty"` // set, bump
	Watch *watchSpec `json:"watch,omitempty"`
	Seed  []string   `json:"seed,omitempty"` // open: addresses to join
}

// openSpec describes the nodes a worker hosts.
type openSpec struct {
	Names      []string `json:"names"`
	Controller string   `json:"controller"` // the controller's name
	Key        []byte   `json:"key"`
	Dir        string   `json:"dir"` // state files
	Stock      bool     `json:"stock"`
	Retransmit int      `json:"retransmit"` // RetransmitMult; 0: the LAN default
	// Tuning experiments; 0: the LAN default.
	GossipInterval time.Duration `json:"gossip_interval,omitempty"`
	GossipNodes    int           `json:"gossip_nodes,omitempty"`
	// Binds are the addresses of a restart, by name; others bind port 0.
	Binds map[string]string `json:"binds,omitempty"`
	Life  string            `json:"life"` // metadata Version: tells a restarted node's lives apart
}

// watchSpec is a condition every node of the worker evaluates. Kinds:
//   - register: the register Key holds a value ≥ Value;
//   - applied: the node advertises Key ("maint" or "seq") ≥ Value (web
//     nodes; the controller holds it at once);
//   - barrier: the controller sees every one of Count web nodes advertise
//     Key ≥ Value (others hold it at once);
//   - meta: the node sees member Member advertise the marker ≥ Value (the
//     member itself holds it at once);
//   - whole: the node sees Count members alive and member Member in life
//     Life.
type watchSpec struct {
	Kind     string `json:"kind"`
	Key      string `json:"key,omitempty"`
	Value    int64  `json:"value,omitempty"`
	Member   string `json:"member,omitempty"`
	Life     string `json:"life,omitempty"`
	Count    int    `json:"count,omitempty"`
	Deadline int64  `json:"deadline"` // unix nanoseconds
}

// reply is a worker's answer.
type reply struct {
	ID      int64             `json:"id"`
	Err     string            `json:"err,omitempty"`
	Addrs   map[string]string `json:"addrs,omitempty"` // open
	At      int64             `json:"at,omitempty"`    // set, bump: unix nanoseconds it started
	Times   map[string]int64  `json:"times,omitempty"` // watch: node -> when it held; absent: not by the deadline
	Traffic *traffic          `json:"traffic,omitempty"`
}

// traffic is what memberlist reports it sent and received, summed over a
// worker's nodes: UDP packets and bytes (encrypted payloads), TCP bytes
// sent and connections opened plus accepted.
type traffic struct {
	Nodes    int     `json:"nodes"`
	UDPSent  float64 `json:"udp_sent"`
	UDPSentB float64 `json:"udp_sent_bytes"`
	UDPRecv  float64 `json:"udp_recv"`
	UDPRecvB float64 `json:"udp_recv_bytes"`
	TCPSentB float64 `json:"tcp_sent_bytes"`
	TCPConns float64 `json:"tcp_conns"`
	Sampled  int64   `json:"sampled"` // unix nanoseconds
}

// lineWriter writes JSON lines from several goroutines.
type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func newLineWriter(w io.Writer) *lineWriter { return &lineWriter{enc: json.NewEncoder(w)} }

func (l *lineWriter) write(v any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.enc.Encode(v); err != nil {
		return fmt.Errorf("write line: %w", err)
	}
	return nil
}

// readLines decodes JSON lines from r into fresh values of T and hands each
// to f until r ends.
func readLines[T any](r io.Reader, f func(T)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return fmt.Errorf("read line: %w", err)
		}
		f(v)
	}
	return sc.Err()
}
