// Package errs holds the sentinel errors the operations layer returns for
// what a caller branches on: a request it refuses as invalid, something it
// does not know, and a request that clashes with the node's role or state
// (another procedure running, a rollback that would change config.php).
// The helpers wrap a sentinel with the message the user reads.
//
// internal/api maps these to HTTP status codes in one place (400, 404,
// 409); the core never speaks HTTP.
package errs

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalid: the request itself is wrong (a bad CIDR, a missing
	// field); retrying it unchanged fails again.
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: the request names something that does not exist (a
	// revision, a deploy, a dump).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request is fine but clashes with this node's role
	// (publish on a web node) or state (a deploy already running).
	ErrConflict = errors.New("conflict")
)

// kindError is a message that wraps one of the sentinels.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func wrap(kind error, format string, a ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, a...)}
}

// Invalid returns an ErrInvalid with the message of fmt.Errorf(format, a...).
func Invalid(format string, a ...any) error { return wrap(ErrInvalid, format, a...) }

// NotFound returns an ErrNotFound with the message of fmt.Errorf(format, a...).
func NotFound(format string, a ...any) error { return wrap(ErrNotFound, format, a...) }

// Conflict returns an ErrConflict with the message of fmt.Errorf(format, a...).
func Conflict(format string, a ...any) error { return wrap(ErrConflict, format, a...) }
