package mirror

import "time"

// Hooks for the black-box tests of the web side.

// SetClientIdleTimeout changes how long a request of c may make no
// progress (60 s by default).
func SetClientIdleTimeout(c *Client, d time.Duration) { c.idle = d }

// SpareOf returns the release whose tree the warm spare holds, or "".
func SpareOf(r *Releases) string {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	return r.spare.id
}
