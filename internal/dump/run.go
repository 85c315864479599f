package dump

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/durable"
)

// Start begins a dump in the background and returns its record (status
// running). If a dump is running it returns an error wrapping ErrRunning
// that names it.
func (d *Dumper) Start(trigger string) (Record, error) {
	rec, err := d.begin(trigger)
	if err != nil {
		return Record{}, err
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.finish(d.ctx, rec)
	}()
	return *rec, nil
}

// Dump takes a dump and returns its record once it is on disk, verified;
// or the error that stopped it (ErrRunning if another dump runs).
func (d *Dumper) Dump(ctx context.Context, trigger string) (Record, error) {
	rec, err := d.begin(trigger)
	if err != nil {
		return Record{}, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { // Close cancels this dump too
		select {
		case <-d.ctx.Done():
			stop()
		case <-ctx.Done():
		}
	}()
	return d.finish(ctx, rec)
}

// begin reserves the single dump slot and names the dump.
func (d *Dumper) begin(trigger string) (*Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.running; r != nil {
		return nil, fmt.Errorf("%w: %s (%s, started %s)", ErrRunning, r.Name, r.Trigger, r.Started.Format(time.RFC3339))
	}
	now := d.clock.Now().UTC().Round(0) // as the sidecar will say it
	rec := &Record{
		Name: d.freeName(now), Status: StatusRunning, Driver: d.db.Driver, Database: d.db.Name,
		Trigger: trigger, Started: now,
	}
	d.running = rec
	return copyRecord(rec), nil
}

// finish runs the dump and records the outcome.
func (d *Dumper) finish(ctx context.Context, rec *Record) (Record, error) {
	d.log.Info("dump started", "name", rec.Name, "trigger", rec.Trigger)
	meta, err := d.take(ctx, rec)
	d.mu.Lock()
	d.running = nil
	if err != nil {
		rec.Seconds = d.clock.Now().Sub(rec.Started).Seconds()
		rec.Status, rec.Error = StatusFailed, err.Error()
		d.failures++
		d.lastFailure = copyRecord(rec)
	} else {
		rec.Status, rec.Size, rec.SHA256, rec.Seconds = StatusOK, meta.Size, meta.SHA256, meta.Seconds
		d.lastGood = copyRecord(rec)
	}
	d.mu.Unlock()
	if err != nil {
		d.log.Error("dump FAILED; earlier dumps are kept", "name", rec.Name, "trigger", rec.Trigger, "seconds", rec.Seconds, "err", err)
		return *rec, err
	}
	d.log.Info("dump done", "name", rec.Name, "bytes", rec.Size, "sha256", rec.SHA256, "seconds", rec.Seconds)
	if err := d.prune(); err != nil {
		d.log.Error("dump retention", "err", err)
	}
	return *rec, nil
}

// take writes the dump to a temporary file, checks it, makes it durable and
// renames it to its final name, its sidecar next to it.
func (d *Dumper) take(ctx context.Context, rec *Record) (meta sidecarData, err error) {
	f, err := os.CreateTemp(d.db.DumpDir, tempPrefix+rec.Name+".*")
	if err != nil {
		return meta, fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
			os.Remove(sidecar(tmp))
		}
	}()
	cred, err := newCredentials(d.db.User, d.db.PasswordFile, "db.password_file")
	if err != nil {
		return meta, err
	}
	defer cred.remove()
	t0 := time.Now()
	if err := d.eng.dump(ctx, f, cred); err != nil {
		return meta, err
	}
	t1 := time.Now()
	if err := f.Sync(); err != nil {
		return meta, fmt.Errorf("fsync dump: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return meta, fmt.Errorf("close dump: %w", err)
	}
	meta = sidecarData{Name: rec.Name, Driver: rec.Driver, Database: rec.Database, Trigger: rec.Trigger, Started: rec.Started}
	t2 := time.Now()
	if meta.Size, meta.SHA256, err = hashFile(ctx, tmp); err != nil {
		return meta, err
	}
	if meta.Size == 0 {
		return meta, errors.New("the dump is empty")
	}
	t3 := time.Now()
	if err := d.eng.verify(ctx, tmp); err != nil {
		return meta, err
	}
	d.log.Info("dump checked", "name", rec.Name, "tool_seconds", t1.Sub(t0).Seconds(), "fsync_seconds", t2.Sub(t1).Seconds(),
		"sha256_seconds", t3.Sub(t2).Seconds(), "verify_seconds", time.Since(t3).Seconds())
	meta.Seconds = d.clock.Now().Sub(rec.Started).Seconds()
	return meta, d.commit(tmp, meta)
}

// commit writes the sidecar beside the temporary dump, then renames both
// to their final names and fsyncs the directory. The sidecar is renamed
// last: a dump is listed only once its sidecar exists.
func (d *Dumper) commit(tmp string, meta sidecarData) error {
	dir := d.db.DumpDir
	if err := writeSynced(sidecar(tmp), meta); err != nil {
		return fmt.Errorf("write sidecar: %w", err)
	}
	final := filepath.Join(dir, meta.Name)
	if _, err := os.Lstat(final); err == nil {
		return fmt.Errorf("%s already exists", final) // never replace a dump
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename dump: %w", err)
	}
	if err := os.Rename(sidecar(tmp), sidecar(final)); err != nil {
		os.Remove(final)
		return fmt.Errorf("rename sidecar: %w", err)
	}
	return durable.SyncDir(dir)
}

// sidecarData is the content of NAME.json.
type sidecarData struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Driver   string    `json:"driver"`
	Database string    `json:"database"`
	Trigger  string    `json:"trigger"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
}

func sidecar(path string) string { return path + ".json" }

// writeSynced writes v as JSON to a new file and fsyncs it.
func writeSynced(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// hashFile returns the size and hex SHA-256 of a file.
func hashFile(ctx context.Context, path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return 0, "", fmt.Errorf("hash %s: %w", filepath.Base(path), err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
