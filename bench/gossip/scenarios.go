package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"
)

// scaleResult is everything measured on one cluster.
type scaleResult struct {
	nodes, procs int
	stock        bool
	formed       time.Duration
	settle       time.Duration
	spread       map[string][]time.Duration // measure -> one value per operation: the last node's time
	idle, ops    rates                      // per node
	idleCtl      rates                      // the controller alone
	opsCtl       rates
	timedOut     map[string]int // measure -> operations some node did not complete by opTimeout
	failures     []string       // restarts that did not complete
}

// Measures, in report order.
const (
	mTargetKnown = "target register known by every agent"
	mTargetSeen  = "controller sees every web node advertise the target (gossip alone)"
	mMaintKnown  = "maintenance register known by every agent"
	mMaintDone   = "maintenance applied on every agent"
	mMaintSeen   = "controller sees every web node apply maintenance (gossip alone)"
	mMetaSpread  = "one node's metadata change known by every agent"
	mRestart     = "restart of %s (%s): every agent sees every member alive"
)

var measureOrder = []string{mTargetKnown, mTargetSeen, mMaintKnown, mMaintDone, mMaintSeen, mMetaSpread}

// opTimeout bounds one operation; an operation some node did not complete
// by then counts as taking opTimeout, and is reported as timed out.
var opTimeout = 60 * time.Second

// measureOps runs ops rounds of: a maintenance toggle, a new target and
// one random web node's metadata change, gap apart, and samples the
// traffic over them.
func measureOps(ctx context.Context, c *cluster, res *scaleResult, ops int, gap time.Duration) error {
	t0, err := sample(ctx, c)
	if err != nil {
		return err
	}
	for i := 1; i <= ops; i++ {
		if err := c.register(ctx, res, "maintenance", "maint", int64(i), mMaintKnown, mMaintDone, mMaintSeen); err != nil {
			return err
		}
		sleep(ctx, gap)
		if err := c.register(ctx, res, "target", "seq", int64(i), mTargetKnown, "", mTargetSeen); err != nil {
			return err
		}
		sleep(ctx, gap)
		if err := c.metaChange(ctx, res, int64(i)); err != nil {
			return err
		}
		sleep(ctx, gap)
	}
	t1, err := sample(ctx, c)
	if err != nil {
		return err
	}
	res.ops, res.opsCtl = t1.rates(t0)
	return nil
}

// register sets key to v on the controller and times how long until every
// agent knows it, applied it (if applied != ""), and the controller saw
// every web node advertise it.
func (c *cluster) register(ctx context.Context, res *scaleResult, key, field string, v int64, known, applied, seen string) error {
	specs := map[string]watchSpec{
		known: {Kind: "register", Key: key, Value: v},
		seen:  {Kind: "barrier", Key: field, Value: v, Count: len(c.names) - 1},
	}
	if applied != "" {
		specs[applied] = watchSpec{Kind: "applied", Key: field, Value: v}
	}
	started := map[string]*watches{}
	for name, spec := range specs {
		ws, err := c.watch(spec, opTimeout)
		if err != nil {
			return err
		}
		started[name] = ws
	}
	rep, err := c.on(ctx, controllerName, request{Op: "set", Key: key, Value: v})
	if err != nil {
		return err
	}
	for name, ws := range started {
		c.record(ctx, res, name, time.Unix(0, rep.At), ws)
	}
	return nil
}

// metaChange changes one random web node's metadata and times how long
// until every agent has it.
func (c *cluster) metaChange(ctx context.Context, res *scaleResult, i int64) error {
	node := c.names[1+rand.IntN(len(c.names)-1)]
	v := 1800000000 + i
	ws, err := c.watch(watchSpec{Kind: "meta", Member: node, Value: v}, opTimeout)
	if err != nil {
		return err
	}
	rep, err := c.on(ctx, node, request{Op: "bump", Value: v})
	if err != nil {
		return err
	}
	c.record(ctx, res, mMetaSpread, time.Unix(0, rep.At), ws)
	return nil
}

// record waits for a watch and keeps the last node's time from start, or
// opTimeout when some node did not get there.
func (c *cluster) record(ctx context.Context, res *scaleResult, name string, start time.Time, ws *watches) {
	times, err := c.wait(ctx, ws)
	if err != nil {
		if times == nil || ctx.Err() != nil {
			res.failures = append(res.failures, fmt.Sprintf("%s: %v", name, err))
			return
		}
		res.timedOut[name]++
		res.spread[name] = append(res.spread[name], opTimeout)
		return
	}
	res.spread[name] = append(res.spread[name], max(lastOf(times).Sub(start), 0))
}

// lastOf is the latest of times.
func lastOf(times map[string]time.Time) time.Time {
	var last time.Time
	for _, t := range times {
		if t.After(last) {
			last = t
		}
	}
	return last
}

// measureRestarts restarts the controller and one web node, gracefully and
// by SIGKILL, n times each, and times how long until the cluster is whole.
func measureRestarts(ctx context.Context, c *cluster, res *scaleResult, n int, gap time.Duration) error {
	for _, node := range []string{controllerName, restartedName} {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
			name := fmt.Sprintf(mRestart, node, sigName(sig))
			for range n {
				start, times, err := c.restart(ctx, node, sig, opTimeout)
				if err != nil {
					res.failures = append(res.failures, fmt.Sprintf("%s: %v", name, err))
					if times == nil {
						return err // the cluster is not usable any more
					}
					continue
				}
				res.spread[name] = append(res.spread[name], lastOf(times).Sub(start))
				sleep(ctx, gap)
			}
		}
	}
	return nil
}

func sigName(sig syscall.Signal) string {
	if sig == syscall.SIGKILL {
		return "kill -9"
	}
	return "kill -INT"
}

// sleep pauses between operations (pacing, not waiting for a state).
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// snapshot is the cluster's traffic counters at one time.
type snapshot struct {
	at       time.Time
	ctl, web traffic
	ctlCPU   time.Duration
	webCPU   time.Duration
}

func sample(ctx context.Context, c *cluster) (snapshot, error) {
	ctl, web, ctlCPU, webCPU, err := c.traffic(ctx)
	return snapshot{at: time.Now(), ctl: ctl, web: web, ctlCPU: ctlCPU, webCPU: webCPU}, err
}

// rates is traffic per node and second.
type rates struct {
	udpOut, udpIn, udpOutB, udpInB, tcpOutB, tcpConns float64
	cpu                                               float64 // cores, all the nodes together
}

// rates returns the web nodes' and the controller's rates from earlier to s.
func (s snapshot) rates(earlier snapshot) (web, ctl rates) {
	secs := s.at.Sub(earlier.at).Seconds()
	per := func(a, b traffic, cpu time.Duration) rates {
		n := float64(max(a.Nodes, 1)) * secs
		return rates{
			udpOut: (a.UDPSent - b.UDPSent) / n, udpIn: (a.UDPRecv - b.UDPRecv) / n,
			udpOutB: (a.UDPSentB - b.UDPSentB) / n, udpInB: (a.UDPRecvB - b.UDPRecvB) / n,
			tcpOutB: (a.TCPSentB - b.TCPSentB) / n, tcpConns: (a.TCPConns - b.TCPConns) / n,
			cpu: cpu.Seconds() / secs,
		}
	}
	return per(s.web, earlier.web, s.webCPU-earlier.webCPU), per(s.ctl, earlier.ctl, s.ctlCPU-earlier.ctlCPU)
}
