package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/moodle"
)

// dbService is the controller's database work: the dumper, and restores
// (with -switch, the whole database move). It implements api.DumpService.
type dbService struct {
	a *Agent
	d *dump.Dumper

	mu       sync.Mutex
	restores map[string]*api.Restore
	order    []string
	running  string // id of the running restore
}

var _ api.DumpService = (*dbService)(nil)

// openDB starts the dumper on a controller with a db section.
func (a *Agent) openDB(ctx context.Context) error {
	if a.cfg.DB == nil {
		return nil
	}
	if a.cfg.Role != roleController {
		a.log.Warn("the db section is ignored on a web node: dumps run on the controller")
		return nil
	}
	d := dump.New(dump.Config{DB: *a.cfg.DB, Logger: a.log})
	if err := d.Open(ctx); err != nil {
		return fmt.Errorf("db: %w", err)
	}
	a.db = &dbService{a: a, d: d, restores: map[string]*api.Restore{}}
	return nil
}

func (a *Agent) closeDB() error {
	if a.db == nil {
		return nil
	}
	return a.db.d.Close()
}

// dumpService is the API's view of the db work, nil without one.
func (a *Agent) dumpService() api.DumpService {
	if a.db == nil {
		return nil
	}
	return a.db
}

// DumpStats returns the dump counters for the metrics endpoint; ok is
// false on a node that takes no dumps.
func (a *Agent) DumpStats() (s dump.Stats, ok bool) {
	if a.db == nil {
		return dump.Stats{}, false
	}
	return a.db.d.Stats(), true
}

func (s *dbService) StartDump() (dump.Record, error) { return s.d.Start(dump.TriggerRequest) }

func (s *dbService) Dump(ctx context.Context) (dump.Record, error) {
	return s.d.Dump(ctx, dump.TriggerRequest)
}

func (s *dbService) Dumps() (dump.Listing, error) { return s.d.List() }

func (s *dbService) OpenDump(name string) (*os.File, dump.Record, error) { return s.d.OpenDump(name) }

func (s *dbService) DBStatus() api.DBStatus {
	cfg := s.a.cfg.DB
	st := api.DBStatus{Driver: cfg.Driver, Database: cfg.Name}
	l, err := s.d.List()
	if err != nil {
		st.Error = err.Error()
	}
	st.Dumps, st.LastSuccess, st.Failures = len(l.Dumps), l.LastSuccess, l.Failures
	st.LastFailure, st.Running, st.NextScheduled = l.LastFailure, l.Running, l.NextScheduled
	if n := len(l.Dumps); n > 0 {
		st.LastDump = &l.Dumps[n-1]
	}
	return st
}

// Restore step names.
const (
	stepMaintOn  = "maintenance on"
	stepDump     = "dump"
	stepRestore  = "restore"
	stepConfig   = "rewrite config.php"
	stepPublish  = "publish"
	stepWait     = "wait for web nodes"
	stepMaintOff = "maintenance off"
)

// StartRestore checks the request and starts the restore in the background.
func (s *dbService) StartRestore(req api.RestoreRequest) (api.Restore, error) {
	if err := s.checkRestore(req); err != nil {
		return api.Restore{}, err
	}
	r := &api.Restore{ID: newDeployID(), Status: api.DeployRunning, Request: req, Dump: req.Dump, Started: time.Now().UTC()}
	names := []string{stepRestore}
	if req.Switch {
		names = []string{stepMaintOn, stepDump, stepRestore, stepConfig, stepPublish, stepWait, stepMaintOff}
	}
	for _, n := range names {
		r.Steps = append(r.Steps, api.DeployStep{Name: n, Status: api.DeployPending})
	}
	s.mu.Lock()
	if s.running != "" {
		s.mu.Unlock()
		return api.Restore{}, errs.Conflict("a restore is running: %s", s.running)
	}
	s.running = r.ID
	s.restores[r.ID] = r
	s.order = append(s.order, r.ID)
	if len(s.order) > keepDeploys {
		delete(s.restores, s.order[0])
		s.order = s.order[1:]
	}
	snapshot := copyRestore(r)
	s.mu.Unlock()
	s.a.wg.Add(1)
	go func() {
		defer s.a.wg.Done()
		s.run(s.a.ctx, r)
	}()
	return snapshot, nil
}

// checkRestore refuses what would fail later, before anything changes.
func (s *dbService) checkRestore(req api.RestoreRequest) error {
	if req.Host == "" {
		return errs.Invalid("host: the server to restore into is required")
	}
	if _, err := s.d.Complete(req.Target); err != nil {
		return errs.Invalid("%w", err)
	}
	if !req.Switch {
		if req.Dump == "" {
			return errs.Invalid("dump: name the dump to restore (see GET /v1/db/dumps)")
		}
		f, _, err := s.d.OpenDump(req.Dump)
		if err != nil {
			return errs.NotFound("%w", err)
		}
		f.Close()
		return nil
	}
	if req.Dump != "" {
		return errs.Invalid("dump: with switch the restore uses a fresh dump taken once maintenance is on; name none")
	}
	set, err := s.configSettings(req)
	if err != nil {
		return errs.Invalid("%w", err)
	}
	data, err := os.ReadFile(s.configPHP())
	if err != nil {
		return errs.Conflict("switch rewrites config.php in mirror.source: %v", err)
	}
	if _, err := moodle.EditConfig(data, set); err != nil {
		return errs.Conflict("%s: %v", s.configPHP(), err)
	}
	return nil
}

func (s *dbService) configPHP() string { return filepath.Join(s.a.cfg.Mirror.Source, "config.php") }

// configSettings are the config.php values a switch writes: the host
// always; port, name, user and password only when the request gives them.
func (s *dbService) configSettings(req api.RestoreRequest) ([]moodle.Setting, error) {
	set := []moodle.Setting{{Key: "dbhost", Value: req.Host}}
	if req.Port != 0 {
		set = append(set, moodle.Setting{Key: "dbport", Value: strconv.Itoa(req.Port)})
	}
	if req.Name != "" {
		set = append(set, moodle.Setting{Key: "dbname", Value: req.Name})
	}
	if req.User != "" {
		set = append(set, moodle.Setting{Key: "dbuser", Value: req.User})
	}
	if req.PasswordFile != "" {
		pw, err := (&config.DBConfig{PasswordFile: req.PasswordFile}).Password()
		if err != nil {
			return nil, err
		}
		set = append(set, moodle.Setting{Key: "dbpass", Value: pw})
	}
	return set, nil
}

// Restore returns a restore run by id.
func (s *dbService) Restore(id string) (api.Restore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.restores[id]
	if !ok {
		return api.Restore{}, errs.NotFound("no restore %q", id)
	}
	return copyRestore(r), nil
}

func copyRestore(r *api.Restore) api.Restore {
	c := *r
	c.Steps = append([]api.DeployStep(nil), r.Steps...)
	return c
}

// run runs the steps in order and stops at the first failure; a switch
// that fails after maintenance went on leaves it on.
func (s *dbService) run(ctx context.Context, r *api.Restore) {
	var err error
	var rev string // the revision published with the new config.php
	for i := range r.Steps {
		s.step(r, i, api.DeployRunning, "")
		var detail string
		if detail, err = s.action(ctx, r, r.Steps[i].Name, &rev); err != nil {
			s.step(r, i, api.DeployFailed, err.Error())
			break
		}
		s.step(r, i, api.DeployOK, detail)
	}
	s.mu.Lock()
	now := time.Now().UTC()
	r.Finished, r.Seconds, r.Status = &now, now.Sub(r.Started).Seconds(), api.DeploySucceeded
	if err != nil {
		r.Status, r.Error = api.DeployFailed, err.Error()
		if r.Request.Switch && r.Steps[0].Status == api.DeployOK {
			r.Error += " (maintenance stays on; config.php is rewritten only once the restore succeeded)"
		}
	}
	s.running = ""
	s.mu.Unlock()
	s.a.log.Info("restore finished", "id", r.ID, "status", r.Status, "seconds", r.Seconds, "err", err)
}

func (s *dbService) step(r *api.Restore, i int, status, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	markStep(&r.Steps[i], status, detail)
}

func (s *dbService) action(ctx context.Context, r *api.Restore, step string, rev *string) (string, error) {
	a, req := s.a, r.Request
	switch step {
	case stepMaintOn:
		msg := req.Message
		if msg == "" {
			msg = "This site is moving to a new database server and will be back shortly."
		}
		m, err := a.SetMaintenance(api.MaintenanceRequest{Enabled: true, Message: msg})
		if err != nil {
			return "", err
		}
		return a.waitWebNodes(ctx, maintenanceBarrier, "apply maintenance", func(n gossip.NodeMeta) bool { return n.Maint == m.Clock })
	case stepDump:
		rec, err := s.d.Dump(ctx, dump.TriggerSwitch)
		if err != nil {
			return "", err
		}
		s.mu.Lock()
		r.Dump = rec.Name
		s.mu.Unlock()
		return fmt.Sprintf("%s, %d bytes, sha256 %s", rec.Name, rec.Size, rec.SHA256[:12]), nil
	case stepRestore:
		t, _ := s.d.Complete(req.Target)
		if err := s.d.Restore(ctx, r.Dump, t); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s into %s on %s:%d", r.Dump, t.Name, t.Host, t.Port), nil
	case stepConfig:
		set, err := s.configSettings(req)
		if err != nil {
			return "", err
		}
		if err := moodle.RewriteConfig(s.configPHP(), set); err != nil {
			return "", err
		}
		keys := ""
		for _, c := range set {
			keys += " " + c.Key
		}
		return "set" + keys, nil
	case stepPublish:
		published, _, err := a.Publish(ctx, fmt.Sprintf("database moved to %s", req.Host))
		if err != nil {
			return "", err
		}
		*rev = published.ID
		return fmt.Sprintf("revision %d (%s)", published.Seq, published.ID[:12]), nil
	case stepWait:
		id := *rev
		return a.waitWebNodes(ctx, revisionBarrier, "serve the new config.php", func(n gossip.NodeMeta) bool { return n.Rev == id })
	case stepMaintOff:
		_, err := a.SetMaintenance(api.MaintenanceRequest{Enabled: false})
		return "note: this agent's db section still names the old server; update db.host (and port, name, user) so that its dumps follow the database", err
	}
	return "", errors.New("unknown step " + step)
}
