package agent

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/certs"
	"github.com/nodeagent/nodeagent/internal/cluster"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/moodle"
	"github.com/nodeagent/nodeagent/internal/procedure"
)

// controller is the controller role: it publishes the code tree, sets the
// cluster target, holds Moodle through its dataroot, takes dumps and runs
// the procedures (deploys, database moves), one at a time.
type controller struct {
	a        *Agent
	store    *mirror.Store
	dataroot *moodle.Dataroot // nil without maintenance.moodle_dataroot
	db       *dbService       // nil without a db section
	runAs    *moodle.User     // deploy.run_as: commands in the code tree

	gate      procedure.Gate // one procedure at a time: deploy or restore
	deploys   *procedure.Runner[deployData]
	followUps *procedure.Runner[deployData] // after_all of a plain publish or rollback

	mu           sync.Mutex
	followCancel context.CancelCauseFunc // the follow-up in progress
	pendingMu    sync.Mutex              // data_dir/follow-up.json
}

var _ role = (*controller)(nil)

func newController(a *Agent) *controller {
	c := &controller{a: a}
	c.deploys = procedure.NewRunner[deployData](procedure.Config{Kind: "deploy", Gate: &c.gate, Logger: a.log})
	c.followUps = procedure.NewRunner[deployData](procedure.Config{Kind: "follow-up", Logger: a.log})
	if dir := a.cfg.Maintenance.MoodleDataroot; dir != "" {
		c.dataroot = moodle.NewDataroot(dir, filepath.Join(a.cfg.DataDir, "climaintenance.sha256"), a.log)
	}
	return c
}

// openLocal checks the Moodle dataroot, then opens the mirror store and
// the dumper.
func (c *controller) openLocal(ctx context.Context) error {
	if c.a.cfg.Edge != nil {
		c.a.log.Warn("edge section ignored: only web nodes run the edge")
	}
	if c.dataroot != nil {
		if err := c.dataroot.Check(); err != nil {
			return fmt.Errorf("maintenance.moodle_dataroot: %w", err)
		}
	}
	var err error
	if c.runAs, err = moodle.LookupUser(c.a.cfg.Deploy.RunAs); err != nil {
		return fmt.Errorf("deploy.run_as: %w", err)
	}
	m := c.a.cfg.Mirror
	if err := moodle.RemoveConfigLeftovers(m.Source); err != nil {
		c.a.log.Warn("remove leftovers of config.php before publishing", "source", m.Source, "err", err)
	}
	c.store = mirror.NewStore(mirror.StoreConfig{
		Dir: c.a.mirrorDir(), Source: m.Source, Exclude: m.Exclude, Keep: m.Keep, Logger: c.a.log,
	})
	if err := c.store.Open(ctx); err != nil {
		return fmt.Errorf("mirror store: %w", err)
	}
	return c.openDB(ctx)
}

// openCluster makes the latest revision the cluster target when the
// cluster has none yet, and resumes a follow-up the last stop cut short.
func (c *controller) openCluster(context.Context) error {
	if err := c.initTarget(); err != nil {
		return err
	}
	c.resumeFollowUp()
	return nil
}

// stop waits for the procedures, which end with the agent's context.
func (c *controller) stop() error {
	c.deploys.Wait()
	c.followUps.Wait()
	if c.db != nil {
		c.db.restores.Wait()
	}
	return nil
}

func (c *controller) closeCluster() error { return c.closeDB() }

func (c *controller) closeLocal() error {
	if c.store == nil {
		return nil
	}
	return c.store.Close()
}

func (c *controller) apiConfig(cfg *api.Config) {
	cfg.Mirror = c.store.Handler()
	cfg.CertStore = certs.StoreHandler(filepath.Join(c.a.cfg.DataDir, "certs"), c.a.log)
	if c.db != nil {
		cfg.Dumps = c.db
	}
}

func (c *controller) observe() {}

// applyMaintenance holds Moodle (climaintenance.html) while the Moodle
// hold is in force, and releases it otherwise. Site maintenance alone
// leaves Moodle working for the clients the edges let through.
func (c *controller) applyMaintenance(m cluster.Maintenance) (bool, error) {
	if c.dataroot == nil {
		return false, nil
	}
	if m.MoodleHeld(time.Now()) {
		return true, c.dataroot.Hold(m.Message)
	}
	return false, c.dataroot.Release()
}

func (c *controller) serving() (mirror.Revision, bool) {
	if t := c.a.currentTarget(); t != nil {
		return mirror.Revision{Seq: t.Seq, ID: t.ID}, true
	}
	return mirror.Revision{}, false
}

func (c *controller) targetID() string {
	if t := c.a.currentTarget(); t != nil {
		return t.ID
	}
	return ""
}

func (c *controller) behindSince() time.Time { return time.Time{} }

// revisions lists the kept revisions, each with the pinned files that
// differ from the one before it.
func (c *controller) revisions() []api.RevisionItem {
	revs := c.store.Revisions()
	items := make([]api.RevisionItem, len(revs))
	for i, r := range revs {
		items[i].Revision = r
		if i == 0 {
			continue
		}
		changed, err := c.pinnedChanges(revs[i-1].ID, r.ID, false)
		if err != nil {
			c.a.log.Debug("pinned files of a revision", "seq", r.Seq, "err", err) // garbage-collected meanwhile
		}
		items[i].PinnedChanged = changed
	}
	return items
}

func (c *controller) status(st *api.Status) {
	if p := c.store.Progress(); p.Phase != "" {
		st.Publish = &p
	}
}

// checkRevision passes: the controller serves the target by definition.
func (c *controller) checkRevision() api.Check {
	ck := api.Check{Status: api.StatusPass, Time: time.Now()}
	if rev, ok := c.serving(); ok {
		ck.ObservedValue = rev.Seq
	}
	return ck
}

func (c *controller) checks(map[string][]api.Check) {}

func (c *controller) meta(*gossip.NodeMeta) {}

// initTarget makes the controller's latest revision the cluster target when
// the cluster has none yet, and pins the current target against GC.
func (c *controller) initTarget() error {
	if t := c.a.currentTarget(); t != nil {
		if _, err := c.store.Find(t.ID); err != nil {
			c.a.log.Warn("cluster target is not in this controller's store", "seq", t.Seq, "id", t.ID)
		}
		c.store.Pin(t.ID)
		return nil
	}
	if rev, ok := c.store.Latest(); ok {
		return c.setTarget(rev)
	}
	return nil
}

func (c *controller) setTarget(rev mirror.Revision) error {
	c.store.Pin(rev.ID)
	if err := c.a.state.SetTarget(cluster.Target{Seq: rev.Seq, ID: rev.ID}); err != nil {
		return fmt.Errorf("announce target %d: %w", rev.Seq, err)
	}
	c.a.log.Info("cluster target", "seq", rev.Seq, "id", rev.ID)
	c.a.announce()
	return nil
}

// publish records the source tree and makes it the cluster target.
func (c *controller) publish(ctx context.Context, message string) (mirror.Revision, bool, error) {
	start := time.Now()
	rev, created, err := c.store.Publish(ctx, message)
	c.a.metrics.published(created, time.Since(start), err)
	if err != nil {
		return rev, false, err
	}
	if t := c.a.currentTarget(); t == nil || t.ID != rev.ID {
		if err := c.setTarget(rev); err != nil {
			return rev, created, err
		}
	}
	c.a.log.Info("published", "seq", rev.Seq, "id", rev.ID, "files", rev.Files, "changed", rev.Changed, "created", created)
	return rev, created, nil
}

// rollback makes a kept revision the cluster target (web nodes then switch
// from their kept releases). It refuses a revision whose pinned files
// (config.php) differ from the target's, naming them, unless forced.
func (c *controller) rollback(req api.RollbackRequest) (api.RollbackResponse, error) {
	ref := req.Revision
	rev, err := c.store.Find(ref)
	switch {
	case errors.Is(err, mirror.ErrNotFound):
		return api.RollbackResponse{}, errs.NotFound("no kept revision %q", ref)
	case errors.Is(err, mirror.ErrAmbiguous):
		return api.RollbackResponse{}, errs.Invalid("revision %q is ambiguous: give more of the id", ref)
	case err != nil:
		return api.RollbackResponse{}, err
	}
	var changes []string
	if t := c.a.currentTarget(); t != nil && t.ID != rev.ID {
		if changes, err = c.pinnedChanges(t.ID, rev.ID, true); err != nil {
			return api.RollbackResponse{}, err
		}
		if len(changes) > 0 && !req.Force {
			return api.RollbackResponse{}, errs.Conflict("rollback to revision %d would change the pinned %s "+
				"(mirror.pinned: files that tie the code to this site, such as its database): "+
				"roll forward instead (restore the code in mirror.source and publish), or force it with rollback -force",
				rev.Seq, strings.Join(changes, "; "))
		}
	}
	// Pin before announcing, then check the revision survived a GC that may
	// have run between Find and Pin.
	c.store.Pin(rev.ID)
	if _, err := c.store.Find(rev.ID); err != nil {
		c.store.Pin(c.targetID())
		return api.RollbackResponse{}, errs.NotFound("revision %q was just garbage-collected", ref)
	}
	if err := c.setTarget(rev); err != nil {
		return api.RollbackResponse{}, err
	}
	if len(changes) > 0 {
		c.a.log.Warn("rollback forced across pinned files", "seq", rev.Seq, "id", rev.ID, "changes", changes)
	} else {
		c.a.log.Info("rollback", "seq", rev.Seq, "id", rev.ID)
	}
	res := api.RollbackResponse{Target: api.RevRef{Seq: rev.Seq, ID: rev.ID}, PinnedChanges: changes}
	res.FollowUp, err = c.followUp("rollback", res.Target, req.AllowMissing)
	return res, err
}

// maxPinnedSize bounds a pinned file read to tell what changed in it.
const maxPinnedSize = 1 << 20

// pinnedChanges lists the mirror.pinned files that differ between two
// kept revisions; with detail, a config.php names the database settings
// that differ ("config.php: $CFG->dbhost 'a' → 'b'").
func (c *controller) pinnedChanges(from, to string, detail bool) ([]string, error) {
	var out []string
	for _, p := range c.a.cfg.Mirror.Pinned {
		a, inFrom, err := c.store.Entry(from, p)
		if err != nil {
			return nil, err
		}
		b, inTo, err := c.store.Entry(to, p)
		if err != nil {
			return nil, err
		}
		switch {
		case !inFrom && !inTo:
		case !inTo:
			out = append(out, p+" (absent from the revision)")
		case !inFrom:
			out = append(out, p+" (absent from the target)")
		case a.Type != b.Type || a.SHA256 != b.SHA256 || a.Target != b.Target:
			out = append(out, c.describePinned(p, from, to, a, b, detail))
		}
	}
	return out, nil
}

// describePinned names a pinned file that changed, with the database
// settings that differ when it is a config.php.
func (c *controller) describePinned(p, from, to string, a, b mirror.Entry, detail bool) string {
	if !detail || path.Base(p) != "config.php" || a.Type != mirror.TypeFile || b.Type != mirror.TypeFile {
		return p
	}
	old, err1 := c.store.ReadFile(from, p, maxPinnedSize)
	cur, err2 := c.store.ReadFile(to, p, maxPinnedSize)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Sprintf("%s (cannot compare: %v)", p, err)
	}
	if diff := moodle.DBChanges(old, cur); len(diff) > 0 {
		return p + ": " + strings.Join(diff, ", ")
	}
	return p + " (no database setting differs)"
}

// Rollback implements api.Node.
func (a *Agent) Rollback(req api.RollbackRequest) (api.RollbackResponse, error) {
	c, err := a.controllerFor("rollback")
	if err != nil {
		return api.RollbackResponse{}, err
	}
	return c.rollback(req)
}
