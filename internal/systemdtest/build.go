// Package systemdtest runs the nodeagent package under real systemd: it
// builds .debs at chosen versions, sets up a web node (the package's unit,
// an edge in front of a loadtest backend) and a controller in a
// systemd-nspawn machine, and drives the loadtest client inside it. The
// test of the package (packaging/systemd_test.go) and bench/restart share
// it; the product never imports it.
package systemdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Repo finds the module root from the working directory.
func Repo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildDeb builds the package at version (a Debian version) into dir, as
// `make deb` does but without touching the repository's dist/: the binary
// stamped with version, then nfpm with the repository's packaging config.
func BuildDeb(ctx context.Context, repo, dir, version string) (string, error) {
	work := filepath.Join(dir, "deb-"+version)
	for _, p := range []string{"packaging", "README.md", "docs/migrate-from-cron-sync.md"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(work, p)), 0o755); err != nil {
			return "", err
		}
		if err := run(ctx, repo, nil, "cp", "-a", p, filepath.Join(work, p)); err != nil {
			return "", err
		}
	}
	env := []string{"CGO_ENABLED=0"}
	if err := run(ctx, repo, env, "go", "build", "-trimpath", "-ldflags",
		"-s -w -X main.version="+version+" -X main.commit=systemdtest", "-o", filepath.Join(work, "dist/nodeagent"), "./cmd/nodeagent"); err != nil {
		return "", err
	}
	nfpm := filepath.Join(dir, "nfpm")
	if _, err := os.Stat(nfpm); err != nil {
		if err := run(ctx, repo, nil, "go", "build", "-o", nfpm, "github.com/goreleaser/nfpm/v2/cmd/nfpm"); err != nil {
			return "", err
		}
	}
	deb := filepath.Join(dir, "nodeagent_"+version+"_amd64.deb")
	env = []string{"VERSION=" + version, "DEB_ARCH=amd64"}
	if err := run(ctx, work, env, nfpm, "package", "--config", "packaging/nfpm.yaml", "--packager", "deb", "--target", deb); err != nil {
		return "", err
	}
	return deb, nil
}

// BuildHelper builds the loadtest helper (static) to out.
func BuildHelper(ctx context.Context, repo, out string) error {
	return run(ctx, repo, []string{"CGO_ENABLED=0"}, "go", "build", "-o", out, "./internal/loadtest/loadhelper")
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}
