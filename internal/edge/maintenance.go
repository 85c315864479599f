package edge

import (
	"fmt"
	"html"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// MessagePlaceholder is replaced, wherever it appears in the maintenance
// page, by the HTML-escaped maintenance message.
const MessagePlaceholder = "{{message}}"

// maintenancePage renders the maintenance page for a message, keeping the
// last rendering (the message rarely changes).
type maintenancePage struct {
	file     string // "" = built-in
	template string
	last     atomic.Pointer[renderedPage]
}

type renderedPage struct {
	message string
	body    []byte
}

func newMaintenancePage(file string) *maintenancePage {
	return &maintenancePage{file: file, template: builtinMaintenancePage}
}

// load reads the page file, if any.
func (p *maintenancePage) load() error {
	if p.file == "" {
		return nil
	}
	b, err := os.ReadFile(p.file)
	if err != nil {
		return fmt.Errorf("edge.maintenance_page: %w", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return fmt.Errorf("edge.maintenance_page: %s is empty", p.file)
	}
	p.template = string(b)
	p.last.Store(nil)
	return nil
}

func (p *maintenancePage) render(message string) []byte {
	if r := p.last.Load(); r != nil && r.message == message {
		return r.body
	}
	body := []byte(strings.ReplaceAll(p.template, MessagePlaceholder, html.EscapeString(message)))
	p.last.Store(&renderedPage{message: message, body: body})
	return body
}

// serveMaintenance answers 503 with Retry-After and the maintenance page.
func (e *Edge) serveMaintenance(w http.ResponseWriter, r *http.Request, m Maintenance) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter(m.Until, time.Now())))
	writePage(w, r, http.StatusServiceUnavailable, e.page.render(m.Message))
}

// retryAfter is the number of seconds until the end of maintenance, at
// least 1, or 300 when it has no end.
func retryAfter(until, now time.Time) int {
	if until.IsZero() || !until.After(now) {
		return defaultRetryAfterSecs
	}
	return int(math.Ceil(until.Sub(now).Seconds()))
}
