package faults

import (
	"context"
	"fmt"
	"time"
)

// Result is the outcome of one scenario.
type Result struct {
	Scenario   Scenario
	Violations []string // broken invariants
	Err        error    // the harness could not run the scenario
	Recovered  time.Duration
	Took       time.Duration
}

// Failed reports whether the round broke an invariant or could not run.
func (r Result) Failed() bool { return r.Err != nil || len(r.Violations) > 0 }

// Settle waits until the cluster serves its target before a scenario: a
// cluster a previous scenario left broken is no place to test the next.
func (c *Cluster) Settle(ctx context.Context, timeout time.Duration) error {
	if _, err := c.WaitServing(ctx, timeout); err != nil {
		return fmt.Errorf("the cluster does not serve its target before the scenario: %w", err)
	}
	return nil
}

// Run runs one scenario on a cluster that serves its target, with the
// checker watching, then checks the recovery: within 10 s of the fault's
// end every node serves the cluster target; a publish then reaches every
// node within 10 s; and after it no temporary file is left.
func (c *Cluster) Run(ctx context.Context, s Scenario) (res Result) {
	res.Scenario = s
	start := time.Now()
	defer func() { res.Took = time.Since(start) }()
	c.opts.Logf("scenario: %s", s)
	k := c.StartChecker()
	if err := c.Inject(ctx, s, k); err != nil {
		res.Err = fmt.Errorf("%s: %w", s, err)
		res.Violations = k.Stop()
		return res
	}
	took, err := c.WaitServing(ctx, 10*time.Second)
	res.Recovered = took
	if err != nil {
		k.Violate("after the fault ended: %v", err)
	} else {
		c.opts.Logf("serving again %.1fs after the fault ended", took.Seconds())
		c.nextSync(ctx, k)
	}
	res.Violations = k.Stop()
	return res
}

// nextSync publishes and checks that every node serves it within 10 s and
// that no temporary file is left afterwards.
func (c *Cluster) nextSync(ctx context.Context, k *Checker) {
	if _, err := c.Publish(ctx); err != nil {
		k.Violate("publish after the fault: %v", err)
		return
	}
	if _, err := c.WaitServing(ctx, 10*time.Second); err != nil {
		k.Violate("the publish after the fault: %v", err)
		return
	}
	if err := c.WaitNoTemps(10 * time.Second); err != nil {
		k.Violate("%v", err)
	}
}
