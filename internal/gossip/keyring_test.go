package gossip_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

func mustLoadKeyring(tb testing.TB, path string, fileKey []byte) *gossip.Keyring {
	tb.Helper()
	k, err := gossip.LoadKeyring(path, fileKey, nil)
	if err != nil {
		tb.Fatalf("load keyring: %v", err)
	}
	return k
}

// fps lists a keyring's fingerprints, the primary first.
func fps(k *gossip.Keyring) []string {
	var out []string
	for i, ki := range k.Keys() {
		if ki.Primary != (i == 0) {
			panic("primary not first")
		}
		out = append(out, ki.Fingerprint)
	}
	return out
}

func TestKeyringCreatedFromKeyFile(t *testing.T) {
	k1 := MustKey(t)
	path := filepath.Join(t.TempDir(), "keyring.json")
	k := mustLoadKeyring(t, path, k1)
	if got := fps(k); !slices.Equal(got, []string{gossip.Fingerprint(k1)}) {
		t.Fatalf("keys %v", got)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring file: %v %v, want mode 0600", fi, err)
	}
	if got := fps(mustLoadKeyring(t, path, k1)); !slices.Equal(got, []string{gossip.Fingerprint(k1)}) {
		t.Fatalf("reloaded keys %v", got)
	}
}

// TestKeyringFileWinsUntilKeyFileChanges: after a rotation the keyring
// file holds; a key file left unchanged does not bring the old key back,
// an edited one replaces the keyring.
func TestKeyringFileWinsUntilKeyFileChanges(t *testing.T) {
	k1, k2, k3 := MustKey(t), MustKey(t), MustKey(t)
	path := filepath.Join(t.TempDir(), "keyring.json")
	k := mustLoadKeyring(t, path, k1)
	mustDo(t, k.Install(k2))
	mustDo(t, k.Use(gossip.Fingerprint(k2)))
	mustDo(t, k.Remove(gossip.Fingerprint(k1)))
	if got, want := fps(mustLoadKeyring(t, path, k1)), []string{gossip.Fingerprint(k2)}; !slices.Equal(got, want) {
		t.Fatalf("unchanged key file: keys %v, want %v", got, want)
	}
	if got, want := fps(mustLoadKeyring(t, path, k3)), []string{gossip.Fingerprint(k3)}; !slices.Equal(got, want) {
		t.Fatalf("edited key file: keys %v, want %v", got, want)
	}
	k = mustLoadKeyring(t, path, k3)
	mustDo(t, k.Install(k2))
	mustDo(t, k.Use(gossip.Fingerprint(k2)))
	if got, want := fps(mustLoadKeyring(t, path, k3)), []string{gossip.Fingerprint(k2), gossip.Fingerprint(k3)}; !slices.Equal(got, want) {
		t.Fatalf("key file taken in already: keys %v, want %v", got, want)
	}
}

func TestKeyringRules(t *testing.T) {
	k1, k2 := MustKey(t), MustKey(t)
	k := mustLoadKeyring(t, filepath.Join(t.TempDir(), "keyring.json"), k1)
	if err := k.Use(gossip.Fingerprint(k2)); !errors.Is(err, gossip.ErrKeyNotInstalled) {
		t.Fatalf("use of a key not installed: %v", err)
	}
	if err := k.Remove(gossip.Fingerprint(k1)); !errors.Is(err, gossip.ErrPrimaryKey) {
		t.Fatalf("remove the primary key: %v", err)
	}
	mustDo(t, k.Remove(gossip.Fingerprint(k2))) // not installed: nothing to do
	mustDo(t, k.Install(k2))
	mustDo(t, k.Install(k2))
	if got := fps(k); len(got) != 2 {
		t.Fatalf("installed twice: %v", got)
	}
	if err := k.Install(k2[:16]); err == nil {
		t.Fatal("a 16-byte key was installed")
	}
	secrets := k.Secrets()
	secrets[0][0] ^= 0xff // a copy: the keyring is unchanged
	if !bytes.Equal(k.Secrets()[0], k1) {
		t.Fatal("Secrets exposes the keyring's own memory")
	}
}

func TestKeyringBadFile(t *testing.T) {
	k1 := MustKey(t)
	secret := base64.StdEncoding.EncodeToString(k1)
	for name, content := range map[string]string{
		"not json":  "nodeagent " + secret,
		"no key":    `{"keys":[]}`,
		"short key": `{"keys":["` + base64.StdEncoding.EncodeToString(k1[:16]) + `"]}`,
		"twice":     `{"keys":["` + secret + `","` + secret + `"]}`,
		"unknown":   `{"keys":["` + secret + `"],"other":1}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring.json")
			mustDo(t, os.WriteFile(path, []byte(content), 0o600))
			_, err := gossip.LoadKeyring(path, k1, nil)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove the file") {
				t.Fatalf("got %v, want an error naming the file and the way out", err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:12]) {
				t.Fatalf("error quotes the key: %v", err)
			}
		})
	}
}

// TestKeyringRotationLive rotates the key of a running three-node cluster:
// registers written at every step reach every node, and afterwards a node
// holding only the old key cannot join.
func TestKeyringRotationLive(t *testing.T) {
	t.Parallel()
	k1, k2 := MustKey(t), MustKey(t)
	dir := t.TempDir()
	var rings []*gossip.Keyring
	nodes := MustCluster(t, 3, k1, func(c *gossip.Config) {
		r := mustLoadKeyring(t, filepath.Join(dir, c.Name+".json"), k1)
		rings = append(rings, r)
		c.Keyring = r
	})
	step := func(what string, f func(*gossip.Keyring) error) {
		t.Helper()
		for _, r := range rings {
			mustDo(t, f(r))
		}
		if _, err := nodes[0].Set("step", what); err != nil {
			t.Fatal(err)
		}
		waitAll(t, nodes, "register after "+what, func(g *gossip.Gossip) bool {
			r, ok := g.Get("step")
			return ok && string(r.Value) == `"`+what+`"`
		})
		waitAll(t, nodes, "all alive after "+what, func(g *gossip.Gossip) bool {
			return countState(g.Members(), gossip.StateAlive) == 3
		})
	}
	step("install", func(r *gossip.Keyring) error { return r.Install(k2) })
	step("use", func(r *gossip.Keyring) error { return r.Use(gossip.Fingerprint(k2)) })
	step("remove", func(r *gossip.Keyring) error { return r.Remove(gossip.Fingerprint(k1)) })

	stale := MustOpen(t, testConfig("stale", k1))
	if n, err := stale.Join(nodes[0].Addr()); err == nil {
		t.Fatalf("a node with only the removed key joined %d nodes", n)
	}
	fresh := MustOpen(t, testConfig("fresh", k2))
	if _, err := fresh.Join(nodes[0].Addr()); err != nil {
		t.Fatalf("a node with the new key: %v", err)
	}
}

func mustDo(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
