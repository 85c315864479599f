package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// adoptSuffix names where a real directory found at Target is moved.
const adoptSuffix = ".pre-nodeagent"

// openTarget removes the switch leftovers of a crash next to Target, finds
// the current release, and refuses a Target the agent cannot take over
// without deleting something of the user's.
func (r *Releases) openTarget() error {
	parent := filepath.Dir(r.target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	if err := r.removeSwitchTemps(parent); err != nil {
		return err
	}
	aside := r.target + adoptSuffix
	if dest, err := os.Readlink(aside); err == nil {
		// Our own link, left by a crash in the middle of an adoption.
		if _, ok := r.releaseOf(dest); ok {
			if err := os.Remove(aside); err != nil {
				return err
			}
		}
	}
	fi, err := os.Lstat(r.target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		dest, err := os.Readlink(r.target)
		if err != nil {
			return err
		}
		if id, ok := r.releaseOf(dest); ok {
			r.current = id
		} else {
			r.log.Warn("target is a symlink outside the releases; it will be replaced", "target", r.target, "dest", dest)
		}
		return nil
	case fi.IsDir():
		if _, err := os.Lstat(aside); err == nil {
			return fmt.Errorf("target %s is a directory and %s exists: move one of them away", r.target, aside)
		}
		r.log.Info("target is a directory: it will be moved aside at the first switch", "target", r.target, "aside", aside)
		return nil
	default:
		return fmt.Errorf("target %s exists and is neither a directory nor a symlink", r.target)
	}
}

// removeSwitchTemps removes the "<target>.tmp-*" symlinks of an interrupted
// switch; it touches nothing else.
func (r *Releases) removeSwitchTemps(parent string) error {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	prefix := filepath.Base(r.target) + tmpPrefix
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && e.Type() == fs.ModeSymlink {
			if err := os.Remove(filepath.Join(parent, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// releaseOf returns the release id a symlink destination names, if it is a
// directory directly under releases/.
func (r *Releases) releaseOf(dest string) (string, bool) {
	if !filepath.IsAbs(dest) {
		dest = filepath.Join(filepath.Dir(r.target), dest)
	}
	dest = filepath.Clean(dest)
	id := filepath.Base(dest)
	if _, err := ParseHash(id); err != nil {
		return "", false
	}
	if filepath.Dir(dest) == r.relDir {
		return id, true
	}
	a, errA := os.Stat(filepath.Dir(dest))
	b, errB := os.Stat(r.relDir)
	return id, errA == nil && errB == nil && os.SameFile(a, b)
}

// switchTo points Target at releases/<id> with one rename of a new symlink
// over it: a reader resolving Target sees the whole old or the whole new
// tree.
func (r *Releases) switchTo(id string) error {
	dest := filepath.Join(r.relDir, id)
	fi, err := os.Lstat(r.target)
	switch {
	case err == nil && fi.IsDir():
		return r.adopt(dest)
	case err == nil && fi.Mode()&fs.ModeSymlink == 0:
		return fmt.Errorf("switch: target %s is not a symlink; refusing to replace it", r.target)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("switch: %w", err)
	}
	tmp := r.target + tmpPrefix + strconv.FormatUint(rand.Uint64(), 36)
	if err := os.Symlink(dest, tmp); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	if err := os.Rename(tmp, r.target); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("switch: %w", err)
	}
	if err := syncDir(filepath.Dir(r.target)); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	return nil
}

// adopt replaces the real directory at Target by a symlink to dest and keeps
// the directory as "<target>.pre-nodeagent". The link is made under that
// name and exchanged with the directory in one step, so Target never goes
// missing; where the filesystem cannot exchange, the directory is moved
// aside first.
func (r *Releases) adopt(dest string) error {
	aside := r.target + adoptSuffix
	if _, err := os.Lstat(aside); err == nil {
		return fmt.Errorf("switch: target %s is a directory and %s exists", r.target, aside)
	}
	if err := os.Symlink(dest, aside); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	err := unix.Renameat2(unix.AT_FDCWD, aside, unix.AT_FDCWD, r.target, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		os.Remove(aside)
		if err := os.Rename(r.target, aside); err != nil {
			return fmt.Errorf("switch: move %s aside: %w", r.target, err)
		}
		err = os.Symlink(dest, r.target)
	}
	if err != nil {
		os.Remove(aside)
		return fmt.Errorf("switch: adopt %s: %w", r.target, err)
	}
	r.log.Info("moved the existing target directory aside", "target", r.target, "aside", aside)
	if err := syncDir(filepath.Dir(r.target)); err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	return nil
}

// maxHookOutput bounds the AfterSwitch output kept for the log.
const maxHookOutput = 16 << 10

// runAfterSwitch runs the AfterSwitch command with the new release in its
// environment and logs its output.
func (r *Releases) runAfterSwitch(ctx context.Context, rev Revision) error {
	argv := r.cfg.AfterSwitch
	if len(argv) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AfterSwitchTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"NODEAGENT_REVISION="+rev.ID,
		"NODEAGENT_SEQ="+strconv.FormatUint(rev.Seq, 10),
		"NODEAGENT_RELEASE="+filepath.Join(r.relDir, rev.ID),
	)
	out := &limitedBuffer{max: maxHookOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second // children holding the output open
	start := time.Now()
	err := cmd.Run()
	log := r.log.With("argv", argv, "duration", time.Since(start).Round(time.Millisecond),
		"output", strings.TrimSpace(out.String()))
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %s: %w", r.cfg.AfterSwitchTimeout, err)
		}
		log.Error("after_switch failed", "err", err)
		return fmt.Errorf("%w: %s: %w", ErrAfterSwitch, argv[0], err)
	}
	log.Info("after_switch done")
	return nil
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }
