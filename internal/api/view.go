package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
)

// ClusterView is what an operator reads about the whole cluster beyond this
// node's own state, and the one action taken on another node: the status
// page at /ui/ shows exactly this, so the same is open to curl and scripts.
type ClusterView interface {
	// NodeReports asks every live member (this node included) for its
	// status and readiness over the cluster API.
	NodeReports(ctx context.Context) NodeReports
	// SetNodeDrain sets a member's drain flag: this node's directly,
	// another's through its cluster API, presenting the caller's
	// Authorization header there (the member checks it against its own
	// token).
	SetNodeDrain(ctx context.Context, name string, drained bool, authorization string) error
	// History is the recent cluster history this agent recorded.
	History() History
	// Deploys are the recent deploys, newest first (empty on a web node).
	Deploys() []Deploy
}

// NodeReport is one member's own answer to GET /cluster/v1/report: its
// /v1/status and its /readyz, or why it could not be asked.
type NodeReport struct {
	Name    string  `json:"name"`
	API     string  `json:"api"` // the cluster API address asked
	Status  *Status `json:"status,omitempty"`
	Health  *Health `json:"health,omitempty"`
	Error   string  `json:"error,omitempty"`
	Seconds float64 `json:"seconds"` // how long the answer took
}

// NodeReports is the body of GET /v1/nodes.
type NodeReports struct {
	Asked time.Time    `json:"asked"` // when the members were asked
	Nodes []NodeReport `json:"nodes"` // sorted by name
}

// DeployList is the body of GET /v1/deploys.
type DeployList struct {
	Deploys []Deploy `json:"deploys"`
}

// NewProblem is an error a Node returns to answer with status and detail
// (for instance what another member answered to a forwarded call).
func NewProblem(status int, detail string) error { return problem(status, detail) }

func (s *Server) viewRoutes(v1 *echo.Group) {
	if s.cfg.View == nil {
		return
	}
	v1.GET("/nodes", s.nodes)
	v1.PUT("/nodes/:name/drain", s.nodeDrain(true))
	v1.DELETE("/nodes/:name/drain", s.nodeDrain(false))
	v1.GET("/history", s.history)
	v1.GET("/deploys", s.deploys)
}

// reportRoute serves this node's report to other agents (cluster
// certificate required, like the other /cluster/v1/ endpoints).
func (s *Server) reportRoute(c *echo.Group) {
	c.GET("/report", func(c echo.Context) error {
		st, h := s.nodeStatus(), s.cfg.Node.Health()
		return c.JSON(http.StatusOK, NodeReport{Status: &st, Health: &h})
	})
}

// nodeStatus is this node's /v1/status body.
func (s *Server) nodeStatus() Status {
	st := s.cfg.Node.Status()
	if s.cfg.Dumps != nil {
		db := s.cfg.Dumps.DBStatus()
		st.DB = &db
	}
	return st
}

func (s *Server) nodes(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, s.cfg.View.NodeReports(c.Request().Context()))
}

func (s *Server) nodeDrain(drained bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		name := c.Param("name")
		auth := c.Request().Header.Get("Authorization")
		if err := s.cfg.View.SetNodeDrain(c.Request().Context(), name, drained, auth); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]any{"node": name, "drained": drained})
	}
}

func (s *Server) history(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, s.cfg.View.History())
}

func (s *Server) deploys(c echo.Context) error {
	d := s.cfg.View.Deploys()
	if d == nil {
		d = []Deploy{}
	}
	return c.JSON(http.StatusOK, DeployList{Deploys: d})
}
