package mirror

import "time"

// Hooks for the black-box tests of the web side.

// SetClientIdleTimeout changes how long a request of c may make no
// progress (60 s by default).
func SetClientIdleTimeout(c *Client, d time.Duration) { c.idle = d }
