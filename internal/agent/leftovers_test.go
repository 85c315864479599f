package agent_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStartRemovesInterruptedWrites: a kill during one of the agent's
// durable writes in data_dir (drain state, follow-up, keyring, certificate)
// leaves a temporary copy; the next start removes it and keeps the files.
func TestStartRemovesInterruptedWrites(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	cfg := c.config("web-1", "web")
	certs := filepath.Join(cfg.DataDir, "certs")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(cfg.DataDir, ".tmp-drain.json-1878791530"),
		filepath.Join(cfg.DataDir, ".tmp-follow-up.json-42"),
		filepath.Join(cfg.DataDir, ".tmp-gossip-keyring.json-7"),
		filepath.Join(certs, ".tmp-self-signed.key-9"),
	}
	kept := filepath.Join(cfg.DataDir, "notes.txt") // not the agent's: left alone
	for _, f := range append(leftovers, kept) {
		if err := os.WriteFile(f, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.open(cfg, c.key)
	for _, f := range leftovers {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s: still there after a start (%v)", filepath.Base(f), err)
		}
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("a file that is no temporary copy was removed: %v", err)
	}
}
