package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Member is one node as this node sees it (GET /v1/members): its gossip
// state and what it advertises. Times are RFC 3339; absent values null.
type Member struct {
	Name    string `json:"name"`
	Address string `json:"address"` // gossip host:port
	State   string `json:"state"`   // alive, suspect, dead, left
	// Since is when the member became alive, or, when it is not alive,
	// when it was last seen alive.
	Since       time.Time         `json:"since"`
	Role        string            `json:"role"`
	API         string            `json:"api"` // cluster API host:port
	Revision    *RevRef           `json:"revision"`
	Drained     bool              `json:"drained"`
	Ready       bool              `json:"ready"`
	Maintenance MemberMaintenance `json:"maintenance"`
	// BehindSince is when a web node started to be behind the target.
	BehindSince         *time.Time `json:"behind_since"`
	Version             string     `json:"version"`
	CertificateNotAfter *time.Time `json:"certificate_not_after"`
}

// MemberMaintenance is the maintenance state a member applies.
type MemberMaintenance struct {
	Clock  uint64 `json:"clock"`
	Active bool   `json:"active"`
}

// MemberList is the body of GET /v1/members.
type MemberList struct {
	Members []Member `json:"members"`
}

// MemberOf is the API's view of a gossip member.
func MemberOf(m gossip.Member) Member {
	meta := m.Meta
	out := Member{
		Name: m.Name, Address: m.Addr, State: m.State, Since: m.Since.UTC(),
		Role: meta.Role, API: meta.API, Drained: meta.Drained, Ready: meta.Ready,
		Maintenance: MemberMaintenance{Clock: meta.Maint, Active: meta.MaintOn},
		Version:     meta.Version,
	}
	if meta.Rev != "" {
		out.Revision = &RevRef{Seq: meta.Seq, ID: meta.Rev}
	}
	out.BehindSince = unixTime(meta.Behind)
	out.CertificateNotAfter = unixTime(meta.CertExpiry)
	return out
}

func unixTime(sec int64) *time.Time {
	if sec == 0 {
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return &t
}

func (s *Server) members(c echo.Context) error {
	ms := s.cfg.Node.Members()
	list := MemberList{Members: make([]Member, len(ms))}
	for i, m := range ms {
		list.Members[i] = MemberOf(m)
	}
	return c.JSON(http.StatusOK, list)
}

// MemberForgetter forgets a member gone for good (DELETE
// /v1/members/{name}) on every agent: errs.ErrConflict for a member alive
// now, errs.ErrNotFound for a name this node does not list, errs.ErrInvalid
// for this node itself.
type MemberForgetter interface {
	ForgetMember(name string) (Member, error)
}

// ForgetResponse is the answer of DELETE /v1/members/{name}.
type ForgetResponse struct {
	// Forgotten is the member as this node listed it.
	Forgotten Member `json:"forgotten"`
}

func (s *Server) forgetMember(c echo.Context) error {
	if s.cfg.Forget == nil {
		return problem(http.StatusNotFound, "this node cannot forget members")
	}
	m, err := s.cfg.Forget.ForgetMember(c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, ForgetResponse{Forgotten: m})
}
