package dump

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/internal/config"
)

// postgres dumps with pg_dump -Fc (compressed custom format, read back by
// pg_restore) and restores with pg_restore.
type postgres struct {
	db                     config.DBConfig
	pgDump, pgRestore, psq string
}

func newPostgres(db config.DBConfig) (*postgres, error) {
	p := &postgres{db: db}
	for _, t := range []struct {
		path *string
		name string
	}{{&p.pgDump, "pg_dump"}, {&p.pgRestore, "pg_restore"}, {&p.psq, "psql"}} {
		path, err := lookTool(t.name)
		if err != nil {
			return nil, err
		}
		*t.path = path
	}
	return p, nil
}

func (p *postgres) ext() string { return ".dump" }

// pgEnv passes the password through a PGPASSFILE; -w in the arguments
// makes the tools fail instead of prompting when it is wrong or missing.
func pgEnv(cred *credentials) ([]string, error) {
	passfile, err := cred.pgpass()
	if err != nil {
		return nil, err
	}
	extra := []string{"PGCONNECT_TIMEOUT=30", "PGAPPNAME=nodeagent"}
	if passfile != "" {
		extra = append(extra, "PGPASSFILE="+passfile)
	}
	return toolEnv(extra...), nil
}

func pgConn(host string, port int, user string) []string {
	return []string{"-w", "-h", host, "-p", strconv.Itoa(port), "-U", user}
}

func (p *postgres) dump(ctx context.Context, f *os.File, cred *credentials) error {
	env, err := pgEnv(cred)
	if err != nil {
		return err
	}
	stderr := newTail(2048)
	args := append(pgConn(p.db.Host, p.db.Port, p.db.User), "-Fc", "-f", f.Name(), "--", p.db.Name)
	if err := tool(ctx, stderr, env, p.pgDump, args...).Run(); err != nil {
		return toolError("pg_dump", err, stderr)
	}
	return nil
}

func (p *postgres) verify(ctx context.Context, path string) error {
	stderr := newTail(2048)
	cmd := tool(ctx, stderr, toolEnv(), p.pgRestore, "--list", path)
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		return toolError("pg_restore --list", err, stderr)
	}
	return nil
}

// pgCreate creates the target database if it is missing (connected to the
// maintenance database "postgres"); psql variables quote the name.
const pgCreate = `SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS missing \gset
\if :missing
CREATE DATABASE :"db";
\endif
`

// pgCount counts the user's relations in the target database.
const pgCount = `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%';
`

// restore runs pg_restore with --no-owner --no-acl (the objects belong to
// the target's user, whatever roles the source had: the target is usually
// another server where those roles do not exist) in one transaction that
// stops at the first error, so a failed restore leaves the target empty.
func (p *postgres) restore(ctx context.Context, path string, t Target, cred *credentials) error {
	env, err := pgEnv(cred)
	if err != nil {
		return err
	}
	conn := pgConn(t.Host, t.Port, t.User)
	if _, err := p.psql(ctx, env, conn, "postgres", pgCreate, "db="+t.Name); err != nil {
		return fmt.Errorf("create database %s: %w", t.Name, err)
	}
	out, err := p.psql(ctx, env, conn, t.Name, pgCount)
	if err != nil {
		return fmt.Errorf("inspect database %s: %w", t.Name, err)
	}
	if n := strings.TrimSpace(out); n != "0" {
		return fmt.Errorf("database %s on %s:%d already has %s tables, views or sequences; restore into a new or empty database", t.Name, t.Host, t.Port, n)
	}
	stderr := newTail(4096)
	args := append(conn, "--no-owner", "--no-acl", "--exit-on-error", "--single-transaction", "-d", t.Name, "--", path)
	if err := tool(ctx, stderr, env, p.pgRestore, args...).Run(); err != nil {
		return toolError("pg_restore", err, stderr)
	}
	return nil
}

// psql runs script in database db and returns its unaligned output.
func (p *postgres) psql(ctx context.Context, env, conn []string, db, script string, vars ...string) (string, error) {
	stderr := newTail(2048)
	args := append(append([]string{}, conn...), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", "-")
	for _, v := range vars {
		args = append(args, "-v", v)
	}
	cmd := tool(ctx, stderr, env, p.psq, args...)
	cmd.Stdin = strings.NewReader(script)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", toolError("psql", err, stderr)
	}
	return out.String(), nil
}
