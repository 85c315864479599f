package api

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/dump"
)

// DumpService is the controller's database work behind /v1/db/: dumps and
// restores. A node without one (a web node, or a controller without a db
// section) answers those endpoints 409.
type DumpService interface {
	// StartDump starts a dump in the background (dump.ErrRunning if one runs).
	StartDump() (dump.Record, error)
	// Dump takes a dump and returns once it is verified on disk.
	Dump(ctx context.Context) (dump.Record, error)
	Dumps() (dump.Listing, error)
	// OpenDump opens a good dump by name (dump.ErrNotFound otherwise).
	OpenDump(name string) (*os.File, dump.Record, error)
	StartRestore(RestoreRequest) (Restore, error)
	Restore(id string) (Restore, error)
	// DBStatus is the db section of /v1/status.
	DBStatus() DBStatus
}

// RestoreRequest is the body of POST /v1/db/restores. Empty target fields
// take the configured database's name, user and password file and the
// driver's default port. PasswordFile is a path on the controller: the
// password itself never travels through the API.
type RestoreRequest struct {
	// Dump is the dump to restore; with Switch it must be empty (a fresh
	// dump is taken once maintenance is on).
	Dump string `json:"dump,omitempty"`
	dump.Target
	// Switch runs the whole database move: maintenance on, fresh dump,
	// restore, rewrite config.php, publish, wait for every web node,
	// maintenance off.
	Switch  bool   `json:"switch,omitempty"`
	Message string `json:"message,omitempty"` // for the maintenance page
	// AllowMissing lets a switch go on when fewer web nodes serve the new
	// config.php than the cluster had.
	AllowMissing bool `json:"allow_missing,omitempty"`
}

// Restore is a restore run (GET /v1/db/restores/{id}); steps and states as
// in a deploy.
type Restore struct {
	ID       string         `json:"id"`
	Status   string         `json:"status"`
	Request  RestoreRequest `json:"request"`
	Dump     string         `json:"dump,omitempty"`
	Started  time.Time      `json:"started"`
	Finished *time.Time     `json:"finished,omitempty"`
	Seconds  float64        `json:"seconds"`
	Steps    []DeployStep   `json:"steps"`
	Error    string         `json:"error,omitempty"`
}

// DBStatus is the db section of /v1/status: enough to alert on.
type DBStatus struct {
	Driver        string       `json:"driver"`
	Database      string       `json:"database"`
	Dumps         int          `json:"dumps"`
	LastSuccess   *time.Time   `json:"last_success"`
	LastDump      *dump.Record `json:"last_dump,omitempty"`
	LastFailure   *dump.Record `json:"last_failure,omitempty"`
	Failures      uint64       `json:"failures"`
	Running       *dump.Record `json:"running,omitempty"`
	NextScheduled *time.Time   `json:"next_scheduled,omitempty"`
	Error         string       `json:"error,omitempty"`
}

func (s *Server) dbRoutes(v1 *echo.Group) {
	v1.POST("/db/dumps", s.postDump)
	v1.GET("/db/dumps", s.getDumps)
	v1.GET("/db/dumps/:name", s.getDump)
	v1.HEAD("/db/dumps/:name", s.getDump)
	v1.POST("/db/restores", s.postRestore)
	v1.GET("/db/restores/:id", s.getRestore)
}

func (s *Server) dumps() (DumpService, error) {
	if s.cfg.Dumps == nil {
		return nil, problem(http.StatusConflict, "no database configured on this node: dumps run on the controller, with a db section in its config")
	}
	return s.cfg.Dumps, nil
}

// postDump starts a dump: 202 with the running record and its future
// Location; with ?wait=true, 201 with the finished record, or 500 with
// the reason it failed.
func (s *Server) postDump(c echo.Context) error {
	ds, err := s.dumps()
	if err != nil {
		return err
	}
	wait, _ := strconv.ParseBool(c.QueryParam("wait"))
	if !wait {
		rec, err := ds.StartDump()
		if err != nil {
			return err
		}
		c.Response().Header().Set("Location", "/v1/db/dumps/"+rec.Name)
		return c.JSON(http.StatusAccepted, rec)
	}
	rec, err := ds.Dump(c.Request().Context())
	if errors.Is(err, dump.ErrRunning) {
		return err
	}
	if err != nil {
		return problem(http.StatusInternalServerError, "dump "+rec.Name+" failed (earlier dumps are kept): "+err.Error())
	}
	c.Response().Header().Set("Location", "/v1/db/dumps/"+rec.Name)
	return c.JSON(http.StatusCreated, rec)
}

func (s *Server) getDumps(c echo.Context) error {
	ds, err := s.dumps()
	if err != nil {
		return err
	}
	l, err := ds.Dumps()
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, l)
}

// getDump streams a dump with its length, its SHA-256 (Repr-Digest, RFC
// 9530, and the older Digest) and Range support.
func (s *Server) getDump(c echo.Context) error {
	ds, err := s.dumps()
	if err != nil {
		return err
	}
	f, rec, err := ds.OpenDump(c.Param("name"))
	if err != nil {
		return err
	}
	defer f.Close()
	h := c.Response().Header()
	if sum, err := hex.DecodeString(rec.SHA256); err == nil {
		b64 := base64.StdEncoding.EncodeToString(sum)
		h.Set("Repr-Digest", "sha-256=:"+b64+":")
		h.Set("Digest", "SHA-256="+b64)
		h.Set("ETag", `"`+rec.SHA256+`"`)
	}
	ctype := "application/octet-stream"
	if strings.HasSuffix(rec.Name, ".gz") {
		ctype = "application/gzip"
	}
	h.Set("Content-Type", ctype)
	h.Set("Content-Disposition", `attachment; filename="`+rec.Name+`"`)
	http.ServeContent(c.Response(), c.Request(), rec.Name, rec.Started, f)
	return nil
}

func (s *Server) postRestore(c echo.Context) error {
	ds, err := s.dumps()
	if err != nil {
		return err
	}
	var req RestoreRequest
	if err := bindJSON(c, &req); err != nil {
		return err
	}
	r, err := ds.StartRestore(req)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Location", "/v1/db/restores/"+r.ID)
	return c.JSON(http.StatusAccepted, r)
}

func (s *Server) getRestore(c echo.Context) error {
	ds, err := s.dumps()
	if err != nil {
		return err
	}
	r, err := ds.Restore(c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, r)
}
