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
	// another address after this long (LAN 30s), e.g. a replaced VM.
	DeadNodeReclaim time.Duration
	Reconnect       time.Duration // how often a dead member (or, when alone, the join list) is retried (LAN 30s)
	Reap            time.Duration // how long dead and left members stay listed (24h)
	LeaveTimeout    time.Duration // bound on the graceful leave in Close (2s)
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
		Reconnect:        30 * time.Second,
		Reap:             24 * time.Hour,
		LeaveTimeout:     2 * time.Second,
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
		Reap:             24 * time.Hour,
		LeaveTimeout:     time.Second,
	}
}

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
	setDur(&t.Reap, d.Reap)
	setDur(&t.LeaveTimeout, d.LeaveTimeout)
	if t.SuspicionMult <= 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	return t
}

func setDur(v *time.Duration, def time.Duration) {
	if *v <= 0 {
		*v = def
	}
}
