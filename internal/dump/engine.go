package dump

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
)

// engine is what differs between database servers: the tools and the
// format of a dump.
type engine interface {
	// ext is the file name extension of a dump.
	ext() string
	// dump writes a dump of the configured database into f.
	dump(ctx context.Context, f *os.File, cred *credentials) error
	// verify checks that the dump at path is complete and readable by the
	// matching tool.
	verify(ctx context.Context, path string) error
	// restore loads the dump at path into t, creating t's database if it
	// does not exist and refusing one that has tables.
	restore(ctx context.Context, path string, t Target, cred *credentials) error
}

func newEngine(db config.DBConfig) (engine, error) {
	switch db.Driver {
	case "postgres":
		return newPostgres(db)
	case "mysql":
		return newMySQL(db)
	}
	return nil, fmt.Errorf("db.driver: unknown driver %q", db.Driver)
}

// lookTool finds the first of names in PATH.
func lookTool(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH (install the database client tools)", strings.Join(names, " or "))
}

// toolEnv is the environment of a tool: the agent's, without credentials
// it may have inherited, plus extra.
func toolEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PGPASSWORD", "PGPASSFILE", "PGSERVICEFILE", "MYSQL_PWD", "MYSQL_HOST", "MYSQL_TCP_PORT":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// tool returns a command for a client tool: killed with ctx, its stderr
// kept (the tail) for the error message.
func tool(ctx context.Context, stderr *tailBuffer, env []string, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Stderr = stderr
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// toolError describes a tool's failure with the tail of what it said.
func toolError(name string, err error, stderr *tailBuffer) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		err = fmt.Errorf("%s", ee.ProcessState) // "exit status 1", "signal: killed"
	}
	if msg := stderr.String(); msg != "" {
		return fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func newTail(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// String returns the last lines said, short: a failing client may echo a
// whole statement (rows of data) before its error line.
func (t *tailBuffer) String() string {
	var lines []string
	for _, l := range strings.Split(strings.ToValidUTF8(string(t.b), "?"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Trim(l, "-") == "" {
			continue
		}
		if len(l) > 300 {
			l = l[:300] + "…"
		}
		lines = append(lines, l)
	}
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	return strings.Join(lines, " | ")
}
