package errs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/nodeagent/nodeagent/internal/errs"
)

func TestKinds(t *testing.T) {
	inner := fmt.Errorf("open x: %w", fs.ErrNotExist)
	for _, tc := range []struct {
		err  error
		kind error
		msg  string
	}{
		{errs.Invalid("allow[%d]: invalid CIDR %q", 1, "10/8"), errs.ErrInvalid, `allow[1]: invalid CIDR "10/8"`},
		{errs.NotFound("no deploy %q", "x"), errs.ErrNotFound, `no deploy "x"`},
		{errs.Conflict("config.php: %w", inner), errs.ErrConflict, "config.php: open x: file does not exist"},
	} {
		if !errors.Is(tc.err, tc.kind) || tc.err.Error() != tc.msg {
			t.Errorf("%v: is %v = %v, message %q", tc.err, tc.kind, errors.Is(tc.err, tc.kind), tc.err.Error())
		}
		for _, other := range []error{errs.ErrInvalid, errs.ErrNotFound, errs.ErrConflict} {
			if other != tc.kind && errors.Is(tc.err, other) {
				t.Errorf("%v is also %v", tc.err, other)
			}
		}
		// Wrapped again with context, it keeps its kind.
		if !errors.Is(fmt.Errorf("rollback: %w", tc.err), tc.kind) {
			t.Errorf("%v lost its kind when wrapped", tc.err)
		}
	}
	if !errors.Is(errs.Conflict("config.php: %w", inner), fs.ErrNotExist) {
		t.Error("the wrapped cause is lost")
	}
}
