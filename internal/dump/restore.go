package dump

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// Target is the database a restore loads a dump into. Empty fields take
// the configured database's values (name, user, password file) or the
// driver's default port.
type Target struct {
	Host         string `json:"host"`
	Port         int    `json:"port,omitempty"`
	Name         string `json:"name,omitempty"`
	User         string `json:"user,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
}

// Complete fills the empty fields of t from the configured database and
// checks the result.
func (d *Dumper) Complete(t Target) (Target, error) {
	if t.Port == 0 {
		t.Port = defaultPort(d.db.Driver)
	}
	if t.Name == "" {
		t.Name = d.db.Name
	}
	if t.User == "" {
		t.User = d.db.User
	}
	if t.PasswordFile == "" {
		t.PasswordFile = d.db.PasswordFile
	}
	switch {
	case t.Host == "" || strings.ContainsAny(t.Host, " \t\n/") && !filepath.IsAbs(t.Host):
		return t, fmt.Errorf("host: %q is not a host name, an IP or a socket path", t.Host)
	case t.Port < 1 || t.Port > 65535:
		return t, fmt.Errorf("port: must be 1-65535, got %d", t.Port)
	case t.Name == "" || len(t.Name) > 63 || strings.ContainsAny(t.Name, "\x00\n"):
		return t, fmt.Errorf("name: %q is not a database name", t.Name)
	case t.PasswordFile != "" && !filepath.IsAbs(t.PasswordFile):
		return t, fmt.Errorf("password_file: %q must be an absolute path (the agent reads it)", t.PasswordFile)
	}
	return t, nil
}

func defaultPort(driver string) int {
	if driver == "mysql" {
		return 3306
	}
	return 5432
}

// Restore loads the good dump name into t (completed by Complete): it
// checks the dump's SHA-256 against its sidecar, creates the database if
// it is missing, refuses a database that already has tables, and runs the
// driver's restore tool.
func (d *Dumper) Restore(ctx context.Context, name string, t Target) error {
	t, err := d.Complete(t)
	if err != nil {
		return err
	}
	f, rec, err := d.OpenDump(name)
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	start := time.Now()
	d.log.Info("restore started", "dump", name, "host", t.Host, "port", t.Port, "database", t.Name, "user", t.User)
	size, sum, err := hashFile(ctx, path)
	if err != nil {
		return err
	}
	if size != rec.Size || sum != rec.SHA256 {
		return fmt.Errorf("dump %s is damaged: %d bytes, sha256 %s; its sidecar says %d bytes, sha256 %s", name, size, sum, rec.Size, rec.SHA256)
	}
	cred, err := newCredentials(t.User, t.PasswordFile, "password_file")
	if err != nil {
		return err
	}
	defer cred.remove()
	if err := d.eng.restore(ctx, path, t, cred); err != nil {
		d.log.Error("restore FAILED", "dump", name, "host", t.Host, "database", t.Name, "err", err)
		return fmt.Errorf("restore %s into %s on %s:%d: %w", name, t.Name, t.Host, t.Port, err)
	}
	d.log.Info("restore done", "dump", name, "host", t.Host, "database", t.Name, "seconds", time.Since(start).Seconds())
	return nil
}
