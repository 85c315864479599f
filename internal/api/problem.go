package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail) }

func problem(status int, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// handleError renders every error as application/problem+json.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var p *Problem
	var he *echo.HTTPError
	switch {
	case errors.As(err, &p):
	case errors.As(err, &he):
		detail := fmt.Sprint(he.Message)
		if he.Internal != nil {
			detail += ": " + he.Internal.Error()
		}
		p = problem(he.Code, detail)
	default:
		code := statusOf(err)
		if code == http.StatusInternalServerError {
			s.log.Error("request", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		p = problem(code, err.Error())
	}
	if err := jsonAs(c, p.Status, "application/problem+json", p); err != nil {
		s.log.Debug("write problem", "err", err)
	}
}

func jsonAs(c echo.Context, code int, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if c.Request().Method == http.MethodHead {
		return c.NoContent(code)
	}
	return c.Blob(code, contentType, append(b, '\n'))
}

// bindJSON decodes a JSON body strictly; an empty body leaves v as is.
func bindJSON(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return problem(http.StatusBadRequest, "malformed JSON body: "+err.Error())
	}
	return nil
}

// statusOf maps the sentinel errors of the core to status codes: the one
// place where an error of the operations layer becomes HTTP.
func statusOf(err error) int {
	switch {
	case errors.Is(err, errs.ErrInvalid), errors.Is(err, mirror.ErrAmbiguous):
		return http.StatusBadRequest
	case errors.Is(err, errs.ErrNotFound), errors.Is(err, mirror.ErrNotFound), errors.Is(err, dump.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errs.ErrConflict), errors.Is(err, dump.ErrRunning):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}
