package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// RequestObserver is told about every answered request: which API (local
// or cluster), the method (one of a fixed set, else "other"), the
// registered route template ("" when no route matched) and the status
// code. Each value comes from a bounded set, whatever clients send, so
// they can label metrics.
type RequestObserver func(api, method, route string, code int, took time.Duration)

// MethodOther stands for every request method outside the standard ones:
// a client may send any token as a method.
const MethodOther = "other"

// Method returns m if it is a standard HTTP method, else MethodOther.
func Method(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return MethodOther
}

// observe reports each request to the configured RequestObserver.
func (s *Server) observe(api string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				// Render now so the observed code is the one sent.
				c.Error(err)
			}
			route := c.Path()
			if c.Response().Status == http.StatusNotFound && route != "" && !s.isRoute(c, route) {
				route = ""
			}
			s.cfg.ObserveRequest(api, Method(c.Request().Method), route, statusCode(c.Response().Status), time.Since(start))
			return nil
		}
	}
}

// statusCode keeps a code in 100-599 (what this server sends); anything
// else becomes 0.
func statusCode(code int) int {
	if code < 100 || code > 599 {
		return 0
	}
	return code
}

// isRoute reports whether route is a registered route rather than one of
// the not-found catch-alls echo adds for groups with middleware.
func (s *Server) isRoute(c echo.Context, route string) bool {
	for _, r := range c.Echo().Routes() {
		if r.Path == route && r.Method != echo.RouteNotFound {
			return true
		}
	}
	return false
}

// metricsRoute serves GET /metrics (local API only) without a token, like
// /healthz: Prometheus scrapes it on loopback.
func (s *Server) metricsRoute(e *echo.Echo) {
	if s.cfg.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(s.cfg.Metrics))
	}
}
