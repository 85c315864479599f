package certs

import (
	"sync"
	"time"
)

// leases are the cluster-wide storage locks, held by the controller. A
// lock is held by an owner until it unlocks or its lease runs out: the
// owner renews it while it works, so a node that dies frees its locks
// within one lease.
type leases struct {
	mu sync.Mutex
	m  map[string]lease
}

type lease struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

// Bounds of a lease a client may ask for.
const (
	minLease = time.Second
	maxLease = 2 * time.Hour
)

func clampLease(d time.Duration) time.Duration {
	return min(max(d, minLease), maxLease)
}

// try takes the lock for owner if it is free, expired, or already owner's.
// It returns the holder when it is someone else's.
func (l *leases) try(name, owner string, ttl time.Duration, now time.Time) (bool, lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]lease{}
	}
	if cur, ok := l.m[name]; ok && cur.Owner != owner && now.Before(cur.Expires) {
		return false, cur
	}
	l.m[name] = lease{Owner: owner, Expires: now.Add(clampLease(ttl))}
	return true, lease{}
}

// renew extends owner's lease to at least now+ttl; false if owner does not
// hold the lock (it expired and someone else took it).
func (l *leases) renew(name, owner string, ttl time.Duration, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.m[name]
	if !ok || cur.Owner != owner {
		return false
	}
	if exp := now.Add(clampLease(ttl)); exp.After(cur.Expires) {
		cur.Expires = exp
	}
	l.m[name] = cur
	return true
}

// release frees owner's lock; releasing a lock one does not hold is a no-op.
func (l *leases) release(name, owner string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.m[name]; ok && cur.Owner == owner {
		delete(l.m, name)
	}
}
