package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// KeyringService runs the gossip keyring operations: cluster-wide ones
// from any node (every live member is asked and answers for itself), and
// this node's own part of them.
type KeyringService interface {
	// KeyringList asks every live member for its keys.
	KeyringList(ctx context.Context) (KeyringReport, error)
	// KeyringInstall installs key (raw bytes) on every live member.
	KeyringInstall(ctx context.Context, key []byte) (KeyringReport, error)
	// KeyringUse makes the key with this fingerprint the primary key of
	// every live member; refused (Conflict) unless every one has it.
	KeyringUse(ctx context.Context, fingerprint string) (KeyringReport, error)
	// KeyringRemove removes the key from every live member; refused
	// (Conflict) while it is the primary key of one.
	KeyringRemove(ctx context.Context, fingerprint string) (KeyringReport, error)
	// KeyringApply applies op to this node alone (POST /cluster/v1/keyring).
	KeyringApply(ctx context.Context, op KeyringOp) (NodeKeyring, error)
}

// Keyring operations (KeyringOp.Op).
const (
	KeyringOpList    = "list"
	KeyringOpInstall = "install"
	KeyringOpUse     = "use"
	KeyringOpRemove  = "remove"
)

// KeyringOp is what one member is asked to do, agent to agent.
type KeyringOp struct {
	Op          string `json:"op"`
	Key         string `json:"key,omitempty"`         // install: base64
	Fingerprint string `json:"fingerprint,omitempty"` // use, remove
}

// NodeKeyring is one member's answer: its keys after the operation, or
// why it did not apply it.
type NodeKeyring struct {
	Node        string              `json:"node"`
	OK          bool                `json:"ok"`
	Error       string              `json:"error,omitempty"`
	Keys        []gossip.KeyInfo    `json:"keys,omitempty"`
	Certificate *ClusterCertificate `json:"certificate,omitempty"`
}

// ClusterCertificate is a member's certificate for agent-to-agent calls.
type ClusterCertificate struct {
	NotAfter time.Time `json:"not_after"`
	Issuer   string    `json:"issuer"` // fingerprint of the key whose CA issued it
}

// KeyUsage counts the live members holding a key.
type KeyUsage struct {
	Fingerprint string `json:"fingerprint"`
	Installed   int    `json:"installed"` // members that have it
	Primary     int    `json:"primary"`   // members that encrypt with it
}

// KeyringReport is the answer of a cluster-wide keyring operation.
type KeyringReport struct {
	Op          string        `json:"op"`
	Fingerprint string        `json:"fingerprint,omitempty"`
	Members     int           `json:"members"` // live members asked
	Failed      int           `json:"failed"`  // members that did not apply it
	Keys        []KeyUsage    `json:"keys"`
	Nodes       []NodeKeyring `json:"nodes"`
	// Skipped lists members that were not asked because they are not
	// alive ("web-3 (dead)"): they missed the operation.
	Skipped []string `json:"skipped,omitempty"`
}

// KeyRequest is the body of POST /v1/keyring.
type KeyRequest struct {
	Key string `json:"key"` // base64 of the 32-byte key (`nodeagent keygen`)
}

// PrimaryRequest is the body of PUT /v1/keyring/primary.
type PrimaryRequest struct {
	Fingerprint string `json:"fingerprint"`
}

// keyringProblem is a problem document that carries the members' answers.
type keyringProblem struct {
	*Problem
	KeyringReport
}

func (s *Server) keyringRoutes(v1 *echo.Group) {
	v1.GET("/keyring", s.keyringCall(func(ctx context.Context, c echo.Context) (KeyringReport, error) {
		return s.cfg.Keyring.KeyringList(ctx)
	}))
	v1.POST("/keyring", s.keyringCall(func(ctx context.Context, c echo.Context) (KeyringReport, error) {
		var req KeyRequest
		if err := bindJSON(c, &req); err != nil {
			return KeyringReport{}, err
		}
		key, err := gossip.ParseKey(req.Key)
		if err != nil {
			return KeyringReport{}, problem(http.StatusBadRequest, "key: "+err.Error())
		}
		return s.cfg.Keyring.KeyringInstall(ctx, key)
	}))
	v1.PUT("/keyring/primary", s.keyringCall(func(ctx context.Context, c echo.Context) (KeyringReport, error) {
		var req PrimaryRequest
		if err := bindJSON(c, &req); err != nil {
			return KeyringReport{}, err
		}
		return s.cfg.Keyring.KeyringUse(ctx, req.Fingerprint)
	}))
	v1.DELETE("/keyring/:fingerprint", s.keyringCall(func(ctx context.Context, c echo.Context) (KeyringReport, error) {
		return s.cfg.Keyring.KeyringRemove(ctx, c.Param("fingerprint"))
	}))
}

// keyringCall answers a cluster-wide operation: 200 with the report when
// every live member applied it; the report inside a problem document
// otherwise (409 refused before anything changed, 500 when members did
// not apply it).
func (s *Server) keyringCall(op func(ctx context.Context, c echo.Context) (KeyringReport, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Keyring == nil {
			return problem(http.StatusNotFound, "no keyring on this node")
		}
		rep, err := op(c.Request().Context(), c)
		var p *Problem
		switch {
		case errors.As(err, &p):
		case err != nil && statusOf(err) != http.StatusInternalServerError:
			p = problem(statusOf(err), err.Error()) // refused: the report says why
		case err != nil:
			return err
		case rep.Failed > 0:
			p = problem(http.StatusInternalServerError,
				fmt.Sprintf("%s: %d of %d live members did not apply it", rep.Op, rep.Failed, rep.Members))
		default:
			return c.JSON(http.StatusOK, rep)
		}
		if rep.Op == "" {
			return p
		}
		return jsonAs(c, p.Status, "application/problem+json", keyringProblem{Problem: p, KeyringReport: rep})
	}
}

// keyringClusterRoutes mounts this node's part of the operations.
func (s *Server) keyringClusterRoutes(c *echo.Group) {
	c.POST("/keyring", func(c echo.Context) error {
		if s.cfg.Keyring == nil {
			return problem(http.StatusNotFound, "no keyring on this node")
		}
		var op KeyringOp
		if err := bindJSON(c, &op); err != nil {
			return err
		}
		nk, err := s.cfg.Keyring.KeyringApply(c.Request().Context(), op)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, nk)
	})
}
