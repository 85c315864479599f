package moodle

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
// dataroot. It removes only a page it wrote itself, and never overwrites
// one it did not write: a page an admin wrote (with
// admin/cli/maintenance.php) stays. The hashes of the pages it wrote are
// kept in a mark file, written before the page, so that a crash at any
// moment leaves a page that the next Release recognises as its own. Calls
// are serialised: one owner of the file.
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
// Moodle would keep running its cron through an upgrade. It removes what a
// crash left of the page's writing.
func (d *Dataroot) Check() error {
	if err := durable.RemoveLeftovers(d.Page()); err != nil {
		d.log.Warn("remove leftovers of climaintenance.html", "err", err)
	}
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
// admin/cli/maintenance.php --enable does. A page someone else wrote is
// left as it is: Moodle is held by it already.
func (d *Dataroot) Hold(message string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	body := holdPage(message)
	marks, err := d.marks()
	if err != nil {
		return err
	}
	cur, err := os.ReadFile(d.Page())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		marks = nil
	case err != nil:
		return err
	case !slices.Contains(marks, pageHash(cur)):
		d.log.Warn("climaintenance.html was written by someone else: left as it is", "path", d.Page())
		return nil
	default:
		marks = []string{pageHash(cur)}
	}
	// The new page is marked before it is written, the old one unmarked
	// after: either may be on disk when the agent dies in between.
	if err := d.writeMarks(append(marks, pageHash(body))); err != nil {
		return err
	}
	if err := durable.WriteFile(d.Page(), body, 0o644); err != nil {
		return err
	}
	return d.writeMarks([]string{pageHash(body)})
}

// Release removes climaintenance.html if Hold wrote it; a page changed
// or written by someone else is left in place (and logged).
func (d *Dataroot) Release() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	marks, err := d.marks()
	if err != nil || len(marks) == 0 {
		return err // nothing of ours to remove
	}
	cur, err := os.ReadFile(d.Page())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case slices.Contains(marks, pageHash(cur)):
		if err := os.Remove(d.Page()); err != nil {
			return err
		}
	default:
		d.log.Warn("climaintenance.html was changed by someone else: left in place", "path", d.Page())
	}
	return os.Remove(d.mark)
}

// marks are the hashes of the pages Hold may have left on disk.
func (d *Dataroot) marks() ([]string, error) {
	b, err := os.ReadFile(d.mark)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

func (d *Dataroot) writeMarks(marks []string) error {
	return durable.WriteFile(d.mark, []byte(strings.Join(marks, "\n")+"\n"), 0o600)
}

func pageHash(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func holdPage(message string) []byte {
	if message == "" {
		message = DefaultHoldMessage
	}
	return []byte("<!DOCTYPE html>\n<html dir=\"ltr\" lang=\"en\" xml:lang=\"en\"><head>\n" +
		"<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\" />\n" +
		"<title>Site maintenance</title></head>\n<body><div style=\"margin-top: 6em; margin-left:auto; margin-right:auto; color:#990000; text-align:center; font-size:large; border-width:1px; border-color:black; background-color:#ffffee; border-style:solid; border-radius: 20px; border-collapse: collapse; width: 80%; -moz-border-radius: 20px; padding: 15px\">\n" +
		html.EscapeString(message) + "\n</div></body></html>\n")
}
