package dump

import "time"

// Clock is the time source of the schedule and of dump names; tests
// inject one they move by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// scheduleLoop takes a dump at every time db.schedule names (local time).
// A scheduled dump that finds another running is skipped and logged.
func (d *Dumper) scheduleLoop() {
	defer d.wg.Done()
	for {
		now := d.clock.Now()
		next := d.sched.Next(now)
		d.mu.Lock()
		d.next = next
		d.mu.Unlock()
		select {
		case <-d.ctx.Done():
			return
		case <-d.clock.After(next.Sub(now)):
		}
		if d.clock.Now().Before(next) {
			continue // the wall clock moved back: compute again
		}
		if _, err := d.Dump(d.ctx, TriggerSchedule); err != nil && d.ctx.Err() == nil {
			d.log.Warn("scheduled dump did not complete", "at", next, "err", err)
		}
	}
}
