package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Operations is the part of Node behind the operations endpoints:
// maintenance, drain, rollback and deploys.
type Operations interface {
	Maintenance() Maintenance
	SetMaintenance(MaintenanceRequest) (Maintenance, error)
	SetDrain(drained bool) error
	Rollback(RollbackRequest) (RollbackResponse, error)
	StartDeploy(DeployRequest) (Deploy, error)
	Deploy(id string) (Deploy, error)
}

func (s *Server) opsRoutes(v1 *echo.Group) {
	v1.GET("/maintenance", s.getMaintenance)
	v1.PUT("/maintenance", s.putMaintenance)
	v1.PUT("/drain", s.drain(true))
	v1.DELETE("/drain", s.drain(false))
	v1.POST("/rollback", s.rollback)
	v1.POST("/deploys", s.startDeploy)
	v1.GET("/deploys/:id", s.getDeploy)
}

func (s *Server) getMaintenance(c echo.Context) error {
	return c.JSON(http.StatusOK, s.cfg.Node.Maintenance())
}

func (s *Server) putMaintenance(c echo.Context) error {
	var req MaintenanceRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	m, err := s.cfg.Node.SetMaintenance(req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, m)
}

func (s *Server) drain(drained bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := s.cfg.Node.SetDrain(drained); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]bool{"drained": drained})
	}
}

func (s *Server) rollback(c echo.Context) error {
	var req RollbackRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	if req.Revision == "" {
		return problem(http.StatusBadRequest, "revision: a seq or an id prefix is required")
	}
	res, err := s.cfg.Node.Rollback(req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

func (s *Server) startDeploy(c echo.Context) error {
	var req DeployRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	d, err := s.cfg.Node.StartDeploy(req)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/deploys/"+d.ID)
	return c.JSON(http.StatusAccepted, d)
}

func (s *Server) getDeploy(c echo.Context) error {
	d, err := s.cfg.Node.Deploy(c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, d)
}
