package dump

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nodeagent/nodeagent/internal/config"
)

// mysql dumps with mysqldump (or mariadb-dump) in one consistent
// transaction, compressed with gzip in the agent, and restores with the
// mysql client.
type mysql struct {
	db                 config.DBConfig
	mysqldump, mysqlCl string
}

// dumpCompleted is the last comment mysqldump writes on success.
const dumpCompleted = "-- Dump completed"

func newMySQL(db config.DBConfig) (*mysql, error) {
	m := &mysql{db: db}
	var err error
	if m.mysqldump, err = lookTool("mariadb-dump", "mysqldump"); err != nil {
		return nil, err
	}
	if m.mysqlCl, err = lookTool("mariadb", "mysql"); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mysql) ext() string { return ".sql.gz" }

// myConn returns the leading arguments of a client tool: the option file
// with the credentials (it must come first), then where the server is.
func myConn(cred *credentials, host string, port int) ([]string, error) {
	defaults, err := cred.myDefaults()
	if err != nil {
		return nil, err
	}
	args := []string{"--defaults-extra-file=" + defaults}
	if filepath.IsAbs(host) {
		return append(args, "--socket="+host), nil
	}
	return append(args, "--host="+host, "--port="+strconv.Itoa(port), "--protocol=TCP"), nil
}

// dump runs mysqldump into a gzip stream written to f. Every stage is
// checked: mysqldump's exit status, the copy, the gzip trailer, the writes.
// --no-tablespaces spares the PROCESS privilege a Moodle user lacks;
// --skip-add-locks because a restore cannot LOCK TABLES around a table
// whose default reads a MariaDB sequence (and InnoDB gains nothing by it).
func (m *mysql) dump(ctx context.Context, f *os.File, cred *credentials) error {
	args, err := myConn(cred, m.db.Host, m.db.Port)
	if err != nil {
		return err
	}
	args = append(args, "--single-transaction", "--routines", "--triggers", "--hex-blob",
		"--no-tablespaces", "--skip-add-locks", "--default-character-set=utf8mb4", "--comments", "--", m.db.Name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stderr := newTail(2048)
	cmd := tool(ctx, stderr, toolEnv(), m.mysqldump, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return toolError("mysqldump", err, stderr)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	gz := gzip.NewWriter(bw)
	_, copyErr := io.Copy(gz, out)
	if copyErr != nil {
		cancel() // a full disk: stop mysqldump rather than let it block
	}
	waitErr := cmd.Wait()
	if copyErr != nil {
		return fmt.Errorf("write dump: %w", copyErr)
	}
	if waitErr != nil {
		return toolError("mysqldump", waitErr, stderr)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("compress mysqldump output: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write dump: %w", err)
	}
	return nil
}

// verify reads the whole gzip stream back (its CRC and length checked) and
// requires mysqldump's completion marker at the end of the SQL.
func (m *mysql) verify(ctx context.Context, path string) error {
	gz, err := gunzip(path)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	defer gz.Close()
	tail := newTail(512)
	if _, err := io.Copy(tail, ctxReader{ctx, gz}); err != nil {
		return fmt.Errorf("read back gzip: %w", err)
	}
	if !bytes.Contains(tail.b, []byte(dumpCompleted)) {
		return fmt.Errorf("read back: the SQL does not end with mysqldump's %q marker (incomplete dump)", dumpCompleted)
	}
	return nil
}

// myName is what a restore accepts as a MySQL database name: it is quoted
// with backticks in CREATE DATABASE.
var myName = regexp.MustCompile(`^[A-Za-z0-9_$]{1,64}$`)

// restore creates the database if it is missing (utf8mb4, as Moodle wants)
// and pipes the decompressed SQL into the mysql client, which stops at the
// first error. MySQL cannot roll back DDL: a failed restore leaves a partly
// filled database, which the next attempt refuses as not empty.
func (m *mysql) restore(ctx context.Context, path string, t Target, cred *credentials) error {
	if !myName.MatchString(t.Name) {
		return fmt.Errorf("database name %q: use letters, digits, _ and $ only", t.Name)
	}
	conn, err := myConn(cred, t.Host, t.Port)
	if err != nil {
		return err
	}
	conn = append(conn, "--default-character-set=utf8mb4")
	create := "CREATE DATABASE IF NOT EXISTS `" + t.Name + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
	if _, err := m.sql(ctx, conn, nil, "-e", create); err != nil {
		return fmt.Errorf("create database %s: %w", t.Name, err)
	}
	count := "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '" + t.Name + "'"
	out, err := m.sql(ctx, conn, nil, "-N", "-B", "-e", count)
	if err != nil {
		return fmt.Errorf("inspect database %s: %w", t.Name, err)
	}
	if n := strings.TrimSpace(out); n != "0" {
		return fmt.Errorf("database %s on %s:%d already has %s tables or views; restore into a new or empty database", t.Name, t.Host, t.Port, n)
	}
	gz, err := gunzip(path)
	if err != nil {
		return err
	}
	defer gz.Close()
	if _, err := m.sql(ctx, conn, gz, t.Name); err != nil {
		return err
	}
	return nil
}

// sql runs the mysql client with stdin and returns its output.
func (m *mysql) sql(ctx context.Context, conn []string, stdin io.Reader, args ...string) (string, error) {
	stderr := newTail(4096)
	cmd := tool(ctx, stderr, toolEnv(), m.mysqlCl, append(append([]string{}, conn...), args...)...)
	cmd.Stdin = stdin
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "", toolError("mysql", err, stderr)
	}
	return out.String(), nil
}

// gunzipFile reads a gzip file decompressed.
type gunzipFile struct {
	*gzip.Reader
	f *os.File
}

func gunzip(path string) (*gunzipFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	gz, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("gzip %s: %w", filepath.Base(path), err)
	}
	return &gunzipFile{gz, f}, nil
}

func (g *gunzipFile) Close() error { return g.f.Close() }

// ctxReader stops a long read when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
