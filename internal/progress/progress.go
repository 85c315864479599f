// Package progress shows a person how a long operation (a publish, a sync)
// advances: on a terminal one line rewritten in place, otherwise a plain
// line now and then, for logs. It owns formatting, rate and ETA; the
// numbers come from the caller. It does no I/O but writing its lines.
package progress

import (
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Sample is the state of an operation at one moment.
type Sample struct {
	Phase            string
	FilesDone, Files int
	BytesDone, Bytes int64 // Bytes 0: not known yet
}

// Options tune a Printer.
type Options struct {
	// TTY rewrites one line in place; otherwise lines are appended.
	TTY bool
	// Every is the least time between two plain lines (default 5 s); a
	// new phase is always printed.
	Every time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Printer renders samples of one operation.
type Printer struct {
	w     io.Writer
	label string
	opts  Options

	phase     string
	phaseAt   time.Time // first sample of the phase: the rate's origin
	phaseFrom int64     // its BytesDone
	lastLine  time.Time
	onScreen  bool // TTY: a line waits to be cleared
}

// New returns a Printer writing lines that start with label.
func New(w io.Writer, label string, opts Options) *Printer {
	if opts.Every <= 0 {
		opts.Every = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Printer{w: w, label: label, opts: opts}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Update shows s.
func (p *Printer) Update(s Sample) {
	now := p.opts.Now()
	newPhase := s.Phase != p.phase
	if newPhase {
		p.phase, p.phaseAt, p.phaseFrom = s.Phase, now, s.BytesDone
	}
	line := p.format(s, now)
	switch {
	case p.opts.TTY:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.onScreen = true
	case newPhase || now.Sub(p.lastLine) >= p.opts.Every:
		fmt.Fprintln(p.w, line)
		p.lastLine = now
	}
}

// Done ends the display: on a terminal it clears the line, so that the
// caller's result takes its place.
func (p *Printer) Done() {
	if p.onScreen {
		fmt.Fprint(p.w, "\r\033[K")
		p.onScreen = false
	}
}

func (p *Printer) format(s Sample, now time.Time) string {
	line := fmt.Sprintf("%s: %-8s %d/%d files", p.label, s.Phase, s.FilesDone, s.Files)
	if s.Bytes <= 0 {
		return line
	}
	line += fmt.Sprintf("  %s/%s", Bytes(s.BytesDone), Bytes(s.Bytes))
	elapsed := now.Sub(p.phaseAt).Seconds()
	if elapsed < 0.5 || s.BytesDone <= p.phaseFrom {
		return line
	}
	rate := float64(s.BytesDone-p.phaseFrom) / elapsed
	line += fmt.Sprintf("  %s/s", Bytes(int64(rate)))
	if left := s.Bytes - s.BytesDone; left > 0 {
		line += "  ETA " + time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return line
}

// Bytes formats n with a binary unit: 512 B, 1.5 KiB, 20.0 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
