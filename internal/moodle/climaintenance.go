package moodle

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// PageName is the file in dataroot that holds Moodle: while it exists,
// Moodle answers every web request (admins' too) with its content and 503,
// and its cron does not run.
const PageName = "climaintenance.html"

// DefaultHoldMessage is the page's text when no message is given: Moodle's
// own wording.
const DefaultHoldMessage = "This site is undergoing maintenance and is currently not available"

// Dataroot holds and releases Moodle through climaintenance.html in a
// dataroot. It removes only a page it wrote itself: the hash of what it
// wrote is kept in a mark file, so a page an admin wrote by hand (with
// admin/cli/maintenance.php) stays. Calls are serialised: one owner of the
// file.
type Dataroot struct {
	dir  string
	mark string
	log  *slog.Logger
	mu   sync.Mutex
}

// NewDataroot returns the Moodle dataroot dir; mark is a file of the
// agent's own (outside dataroot) that records the page it wrote.
func NewDataroot(dir, mark string, log *slog.Logger) *Dataroot {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dataroot{dir: dir, mark: mark, log: log}
}

// Page is the path of climaintenance.html.
func (d *Dataroot) Page() string { return filepath.Join(d.dir, PageName) }

// Check fails when the agent cannot create files in dataroot (a wrong
// path, or one the service keeps read-only): found only at the next hold,
// Moodle would keep running its cron through an upgrade.
func (d *Dataroot) Check() error {
	f, err := os.CreateTemp(d.dir, durable.TempPrefix+"nodeagent-check-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("cannot write into %s: %w", d.dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Hold writes climaintenance.html with message (HTML-escaped), as
// admin/cli/maintenance.php --enable does.
func (d *Dataroot) Hold(message string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	body := holdPage(message)
	if err := durable.WriteFile(d.Page(), body, 0o644); err != nil {
		return err
	}
	return durable.WriteFile(d.mark, fmt.Appendf(nil, "%x\n", sha256.Sum256(body)), 0o600)
}

// Release removes climaintenance.html if it is the page Hold wrote last;
// a page changed or written by someone else is left in place (and
// logged).
func (d *Dataroot) Release() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	want, err := os.ReadFile(d.mark)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing of ours to remove
	}
	if err != nil {
		return err
	}
	cur, err := os.ReadFile(d.Page())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case bytes.Equal(bytes.TrimSpace(want), fmt.Appendf(nil, "%x", sha256.Sum256(cur))):
		if err := os.Remove(d.Page()); err != nil {
			return err
		}
	default:
		d.log.Warn("climaintenance.html was changed by someone else: left in place", "path", d.Page())
	}
	return os.Remove(d.mark)
}

func holdPage(message string) []byte {
	if message == "" {
		message = DefaultHoldMessage
	}
	return []byte("<!DOCTYPE html>\n<html dir=\"ltr\" lang=\"en\" xml:lang=\"en\"><head>\n" +
		"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\" />\n" +
		"<title>Site maintenance</title></head>\n<body><div style=\"margin-top: 6em; margin-left:auto; margin-right:auto; color:#990000; text-align:center; font-size:large; border-width:1px; border-color:black; background-color:#ffffee; border-style:solid; border-radius: 20px; border-collapse: collapse; width: 80%; -moz-border-radius: 20px; padding: 15px\">\n" +
		html.EscapeString(message) + "\n</div></body></html>\n")
}
