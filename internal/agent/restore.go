package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/config"
	"github.com/nodeagent/nodeagent/internal/dump"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/moodle"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// dbService is the controller's database work: the dumper, and restores
// (with -switch, the whole database move). It implements api.DumpService.
type dbService struct {
	c        *controller
	d        *dump.Dumper
	restores *procedure.Runner[restoreData]
}

var _ api.DumpService = (*dbService)(nil)

// restoreData is what a restore records besides its steps.
type restoreData struct {
	Request api.RestoreRequest
	Dump    string // the dump restored (with switch: once taken)
}

// openDB starts the dumper on a controller with a db section.
func (c *controller) openDB(ctx context.Context) error {
	if c.a.cfg.DB == nil {
		return nil
	}
	d := dump.New(dump.Config{DB: *c.a.cfg.DB, Logger: c.a.log})
	if err := d.Open(ctx); err != nil {
		return fmt.Errorf("db: %w", err)
	}
	c.db = &dbService{c: c, d: d, restores: procedure.NewRunner[restoreData](procedure.Config{
		Kind: "restore", Gate: &c.gate, Logger: c.a.log,
	})}
	return nil
}

func (c *controller) closeDB() error {
	if c.db == nil {
		return nil
	}
	return c.db.d.Close()
}

// DumpStats returns the dump counters for the metrics endpoint; ok is
// false on a node that takes no dumps.
func (a *Agent) DumpStats() (s dump.Stats, ok bool) {
	c, isController := a.role.(*controller)
	if !isController || c.db == nil {
		return dump.Stats{}, false
	}
	return c.db.d.Stats(), true
}

func (s *dbService) StartDump() (dump.Record, error) { return s.d.Start(dump.TriggerRequest) }

func (s *dbService) Dump(ctx context.Context) (dump.Record, error) {
	return s.d.Dump(ctx, dump.TriggerRequest)
}

func (s *dbService) Dumps() (dump.Listing, error) { return s.d.List() }

func (s *dbService) OpenDump(name string) (*os.File, dump.Record, error) { return s.d.OpenDump(name) }

func (s *dbService) DBStatus() api.DBStatus {
	cfg := s.c.a.cfg.DB
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

// StartRestore checks the request and starts the restore in the background.
func (s *dbService) StartRestore(req api.RestoreRequest) (api.Restore, error) {
	if err := s.checkRestore(req); err != nil {
		return api.Restore{}, err
	}
	rec, err := s.restores.Start(s.c.a.ctx, restoreData{Request: req, Dump: req.Dump}, s.restoreSteps(req),
		func(r procedure.Record[restoreData]) string {
			if req.Switch && r.Steps[0].Status == procedure.OK {
				return " (maintenance stays on; config.php is rewritten only once the restore succeeded)"
			}
			return ""
		})
	if err != nil {
		return api.Restore{}, err
	}
	if req.Switch {
		s.c.supersedeFollowUp(fmt.Errorf("superseded by restore %s", rec.ID), nil)
	}
	return restoreRecord(rec), nil
}

// Restore returns a restore run by id.
func (s *dbService) Restore(id string) (api.Restore, error) {
	rec, err := s.restores.Get(id)
	if err != nil {
		return api.Restore{}, err
	}
	return restoreRecord(rec), nil
}

func restoreRecord(rec procedure.Record[restoreData]) api.Restore {
	return api.Restore{
		ID: rec.ID, Status: rec.Status, Request: rec.Data.Request, Dump: rec.Data.Dump, Started: rec.Started,
		Finished: rec.Finished, Seconds: rec.Seconds, Steps: rec.Steps, Error: rec.Error,
	}
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

func (s *dbService) configPHP() string { return filepath.Join(s.c.a.cfg.Mirror.Source, "config.php") }

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

// rewriteConfig sets the database settings of the switch in config.php.
func (s *dbService) rewriteConfig(req api.RestoreRequest) (string, error) {
	set, err := s.configSettings(req)
	if err != nil {
		return "", err
	}
	if err := moodle.RewriteConfig(s.configPHP(), set); err != nil {
		return "", err
	}
	keys := make([]string, len(set))
	for i, c := range set {
		keys[i] = c.Key
	}
	return "set " + strings.Join(keys, " "), nil
}

// restoreSteps is a restore; with switch the whole database move.
func (s *dbService) restoreSteps(req api.RestoreRequest) []procedure.Step[restoreData] {
	type step = procedure.Step[restoreData]
	type run = procedure.Run[restoreData]
	restore := step{Name: "restore", Do: func(ctx context.Context, r *run) (string, error) {
		name := r.Data().Dump
		t, _ := s.d.Complete(req.Target)
		if err := s.d.Restore(ctx, name, t); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s into %s on %s:%d", name, t.Name, t.Host, t.Port), nil
	}}
	if !req.Switch {
		return []step{restore}
	}
	return s.switchSteps(req, restore)
}

// switchSteps is the database move around the restore step: maintenance
// on, fresh dump, restore, rewrite config.php, publish, wait for the web
// nodes, after_all, maintenance off.
func (s *dbService) switchSteps(req api.RestoreRequest, restore procedure.Step[restoreData]) []procedure.Step[restoreData] {
	type step = procedure.Step[restoreData]
	type run = procedure.Run[restoreData]
	simple := procedure.Simple[restoreData]
	c := s.c
	site := &siteMaintenance{c: c, kind: "database move", message: req.Message}
	if site.message == "" {
		site.message = "This site is moving to a new database server and will be back shortly."
	}
	var revID string // the revision published with the new config.php
	steps := []step{
		{Name: "maintenance on", Do: func(ctx context.Context, r *run) (string, error) {
			site.reason = fmt.Sprintf("database move %s to %s", r.ID(), req.Host)
			return site.on(ctx)
		}},
		{Name: "dump", Do: func(ctx context.Context, r *run) (string, error) {
			rec, err := s.d.Dump(ctx, dump.TriggerSwitch)
			if err != nil {
				return "", err
			}
			r.Update(func(d *restoreData) { d.Dump = rec.Name })
			return fmt.Sprintf("%s, %d bytes, sha256 %s", rec.Name, rec.Size, rec.SHA256[:12]), nil
		}},
		restore,
		simple("rewrite config.php", func(context.Context) (string, error) { return s.rewriteConfig(req) }),
		{Name: "publish", Do: func(ctx context.Context, r *run) (string, error) {
			t, _ := s.d.Complete(req.Target)
			published, _, err := c.publish(ctx, fmt.Sprintf("database switch (restore %s): config.php points at %s on %s:%d",
				r.ID(), t.Name, t.Host, t.Port))
			if err != nil {
				return "", err
			}
			revID = published.ID
			return fmt.Sprintf("revision %d (%s)", published.Seq, published.ID[:12]), nil
		}},
		simple("wait for web nodes", func(ctx context.Context) (string, error) {
			return c.waitRevision(ctx, revID, "serve the new config.php", req.AllowMissing)
		}),
	}
	if c.hasAfterAll() {
		steps = append(steps, simple("after all", c.afterAll))
	}
	return append(steps,
		simple("maintenance off", func(ctx context.Context) (string, error) {
			detail, err := site.off(ctx)
			return strings.TrimPrefix(detail+"; ", "; ") + "note: this agent's db section still names the old server; update db.host (and port, name, user) so that its dumps follow the database", err
		}),
	)
}
