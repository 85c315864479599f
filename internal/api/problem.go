package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
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
		s.log.Error("request", "method", c.Request().Method, "path", c.Path(), "err", err)
		p = problem(http.StatusInternalServerError, err.Error())
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

// BadRequest is an error a Node returns for input it refuses (400).
func BadRequest(detail string) error { return problem(http.StatusBadRequest, detail) }

// NotFound is an error a Node returns for something unknown (404).
func NotFound(detail string) error { return problem(http.StatusNotFound, detail) }

// Conflict is an error a Node returns for a request that clashes with the
// node's role or state (409).
func Conflict(detail string) error { return problem(http.StatusConflict, detail) }
