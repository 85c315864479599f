package gossip

import "time"

// Timing holds the protocol intervals. Zero fields take the LAN defaults
// (memberlist.DefaultLANConfig for the memberlist ones).
type Timing struct {
	ProbeInterval    time.Duration // failure detection probe period (LAN 1s)
	ProbeTimeout     time.Duration // wait for a probe ack (LAN 500ms)
	GossipInterval   time.Duration // broadcast period (LAN 200ms)
	PushPullInterval time.Duration // full state exchange with a random node (LAN 30s)
	SuspicionMult    int           // suspicion timeout multiplier (LAN 4)
	TCPTimeout       time.Duration // stream connection timeout, bounds a join attempt (LAN 10s)
	GossipToTheDead  time.Duration // keep gossiping to a dead node this long (LAN 30s)
	// DeadNodeReclaim lets a dead node come back under the same name from
	// another address after this long (LAN 30s), e.g. a replaced VM. A node
	// that left comes back from any address at once.
	DeadNodeReclaim time.Duration
	// Reconnect is how often missing members and the join list are retried
	// (LAN 2s; see reconnect for how the load stays flat in large clusters).
	Reconnect time.Duration
	// ReconnectLeft is how long a member that left is still retried
	// (1h); dead members are retried as long as they are listed (Reap).
	ReconnectLeft time.Duration
	Reap          time.Duration // how long dead and left members stay listed (24h)
	LeaveTimeout  time.Duration // bound on the graceful leave in Close (2s)
	// RetransmitMult: every node re-sends a broadcast it learns
	// RetransmitMult·ceil(log10(N+1)) times, so a node misses an update
	// with a probability of about e^-(that count) until push/pull repairs
	// it (LAN 6: about 1 in 160,000 up to 99 nodes; memberlist's default
	// 4 left 1 in 3,000 at 50 nodes).
	RetransmitMult int
	GossipNodes    int // nodes each gossip round sends to (LAN 3)
}

func lanTiming() Timing {
	return Timing{
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		GossipInterval:   200 * time.Millisecond,
		PushPullInterval: 30 * time.Second,
		SuspicionMult:    4,
		TCPTimeout:       10 * time.Second,
		GossipToTheDead:  30 * time.Second,
		DeadNodeReclaim:  30 * time.Second,
		Reconnect:        2 * time.Second,
		ReconnectLeft:    time.Hour,
		Reap:             24 * time.Hour,
		LeaveTimeout:     2 * time.Second,
		RetransmitMult:   6,
		GossipNodes:      3,
	}
}

// TestTiming returns millisecond intervals for clusters on the loopback
// interface in tests.
func TestTiming() Timing {
	return Timing{
		ProbeInterval:    250 * time.Millisecond,
		ProbeTimeout:     150 * time.Millisecond,
		GossipInterval:   30 * time.Millisecond,
		PushPullInterval: time.Second,
		SuspicionMult:    3,
		TCPTimeout:       time.Second,
		GossipToTheDead:  time.Second,
		DeadNodeReclaim:  time.Second,
		Reconnect:        200 * time.Millisecond,
		ReconnectLeft:    time.Hour,
		Reap:             24 * time.Hour,
		LeaveTimeout:     time.Second,
		RetransmitMult:   6,
		GossipNodes:      3,
	}
}

// WithDefaults returns t with its zero fields filled from the LAN defaults:
// the timing a Gossip opened with t runs.
func (t Timing) WithDefaults() Timing { return t.withDefaults() }

// withDefaults fills zero fields from the LAN defaults.
func (t Timing) withDefaults() Timing {
	d := lanTiming()
	setDur(&t.ProbeInterval, d.ProbeInterval)
	setDur(&t.ProbeTimeout, d.ProbeTimeout)
	setDur(&t.GossipInterval, d.GossipInterval)
	setDur(&t.PushPullInterval, d.PushPullInterval)
	setDur(&t.TCPTimeout, d.TCPTimeout)
	setDur(&t.GossipToTheDead, d.GossipToTheDead)
	setDur(&t.DeadNodeReclaim, d.DeadNodeReclaim)
	setDur(&t.Reconnect, d.Reconnect)
	setDur(&t.ReconnectLeft, d.ReconnectLeft)
	setDur(&t.Reap, d.Reap)
	setDur(&t.LeaveTimeout, d.LeaveTimeout)
	setInt(&t.SuspicionMult, d.SuspicionMult)
	setInt(&t.RetransmitMult, d.RetransmitMult)
	setInt(&t.GossipNodes, d.GossipNodes)
	return t
}

func setInt(v *int, def int) {
	if *v <= 0 {
		*v = def
	}
}

func setDur(v *time.Duration, def time.Duration) {
	if *v <= 0 {
		*v = def
	}
}
