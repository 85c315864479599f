package api

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/certs"
)

// CertService is the edge's certificate manager as the API sees it.
type CertService interface {
	State() certs.State
	Reload(ctx context.Context) error
}

// errNoEdge answers certificate calls on a node without an edge.
func errNoEdge() error {
	return problem(http.StatusNotFound, "no edge on this node: certificates are served by web nodes with an edge section")
}

func (s *Server) certRoutes(v1 *echo.Group) {
	v1.GET("/certificates", s.certificates)
	v1.POST("/certificates/reload", s.reloadCertificates)
}

// certStoreRoutes mounts the cluster certificate storage (controller).
func (s *Server) certStoreRoutes(c *echo.Group) {
	if s.cfg.CertStore == nil {
		return
	}
	c.Any("/certstore/*", echo.WrapHandler(http.StripPrefix("/cluster/v1/certstore", s.cfg.CertStore)))
}

func (s *Server) certificates(c echo.Context) error {
	if s.cfg.Certs == nil {
		return errNoEdge()
	}
	return c.JSON(http.StatusOK, s.cfg.Certs.State())
}

// reloadCertificates reloads now; a refused certificate is 422 with the
// reason, the previous one still served.
func (s *Server) reloadCertificates(c echo.Context) error {
	if s.cfg.Certs == nil {
		return errNoEdge()
	}
	if err := s.cfg.Certs.Reload(c.Request().Context()); err != nil {
		return problem(http.StatusUnprocessableEntity, err.Error())
	}
	return c.JSON(http.StatusOK, s.cfg.Certs.State())
}
