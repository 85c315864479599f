package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// IntegrityService checks a web node's served release against its
// manifest (POST /v1/verify). A node without one (the controller) answers
// 409.
type IntegrityService interface {
	// Verify checks every entry and the content of every file; with
	// repair it puts back what differs, from kept releases or the
	// controller, without a switch.
	Verify(ctx context.Context, repair bool) (mirror.VerifyReport, error)
}

// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	Repair bool `json:"repair"`
}

func (s *Server) integrityRoutes(v1 *echo.Group) {
	v1.POST("/verify", s.verify)
}

func (s *Server) verify(c echo.Context) error {
	if s.cfg.Integrity == nil {
		return problem(http.StatusConflict, "verify checks a web node's served release; this node serves none")
	}
	var req VerifyRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	rep, err := s.cfg.Integrity.Verify(c.Request().Context(), req.Repair)
	if errors.Is(err, mirror.ErrNoRelease) {
		return problem(http.StatusConflict, "this node serves no release yet")
	}
	if err != nil {
		s.log.Error("verify", "err", err)
		return problem(http.StatusInternalServerError, "verify: "+err.Error())
	}
	return c.JSON(http.StatusOK, rep)
}
