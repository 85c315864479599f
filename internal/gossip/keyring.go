package gossip

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Keyring errors callers branch on.
var (
	// ErrKeyNotInstalled: a key to use is not in the keyring.
	ErrKeyNotInstalled = errors.New("gossip: key not installed")
	// ErrPrimaryKey: the primary key cannot be removed.
	ErrPrimaryKey = errors.New("gossip: the primary key cannot be removed")
)

// Keyring is this node's gossip keys, persisted in a file: memberlist
// decrypts with any of them and encrypts with the primary one, and the
// changes apply to the running memberlist at once (Config.Keyring). Every
// change is written to the file before it takes effect.
//
// At start (LoadKeyring) the file wins over the key of gossip.key_file,
// until that key changes: a key file edited since the keyring last took it
// in is an operator's instruction, and its key alone becomes the keyring
// (how a node that missed a rotation is brought back).
type Keyring struct {
	path string
	ml   *memberlist.Keyring

	mu      sync.Mutex // serialises changes and file writes
	keyFile string     // fingerprint of the gossip.key_file key last taken in
}

// keyringFile is the JSON form of the keyring file.
type keyringFile struct {
	Keys    []string `json:"keys"`     // base64, the primary first
	KeyFile string   `json:"key_file"` // fingerprint of the key file's key last taken in
}

// KeyInfo describes one installed key without revealing it.
type KeyInfo struct {
	Fingerprint string `json:"fingerprint"`
	Primary     bool   `json:"primary"`
}

// Fingerprint names a key without revealing it: the first 8 bytes of its
// SHA-256, in hex.
func Fingerprint(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// ParseKey decodes a key as `nodeagent keygen` writes it: base64 of 32
// bytes, surrounding space allowed. Errors never quote the input.
func ParseKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("not base64 (create a key with `nodeagent keygen`)")
	}
	if len(k) != KeySize {
		return nil, fmt.Errorf("%d bytes, want %d (create a key with `nodeagent keygen`)", len(k), KeySize)
	}
	return k, nil
}

// LoadKeyring reads the keyring file at path, or creates it holding only
// fileKey (the key of gossip.key_file). When fileKey differs from the one
// the file last took in, the keyring is replaced by fileKey alone. What
// changed is logged.
func LoadKeyring(path string, fileKey []byte, log *slog.Logger) (*Keyring, error) {
	if len(fileKey) != KeySize {
		return nil, fmt.Errorf("gossip: key must be %d bytes, got %d", KeySize, len(fileKey))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, recorded, err := readKeyringFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		keys = [][]byte{fileKey}
		log.Info("gossip keyring created from gossip.key_file", "path", path, "primary", Fingerprint(fileKey))
	} else if err != nil {
		return nil, err
	} else if fp := Fingerprint(fileKey); fp != recorded {
		var dropped []string
		for _, k := range keys {
			if !bytes.Equal(k, fileKey) {
				dropped = append(dropped, Fingerprint(k))
			}
		}
		keys = [][]byte{fileKey}
		log.Warn("gossip.key_file changed since the keyring last read it: the keyring is now its key alone",
			"path", path, "primary", fp, "dropped", dropped)
	}
	ml, err := memberlist.NewKeyring(keys[1:], keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring %s: %w", path, err)
	}
	k := &Keyring{path: path, ml: ml, keyFile: Fingerprint(fileKey)}
	if err := k.write(keys); err != nil {
		return nil, err
	}
	return k, nil
}

// readKeyringFile returns the keys of the file (the primary first) and the
// fingerprint of the key file's key it last took in.
func readKeyringFile(path string) ([][]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("gossip keyring: %w", err)
	}
	keys, recorded, err := decodeKeyring(b)
	if err != nil {
		return nil, "", fmt.Errorf("gossip keyring %s: %w (remove the file to start again from gossip.key_file)", path, err)
	}
	return keys, recorded, nil
}

// decodeKeyring parses the keyring file. Errors never quote a key.
func decodeKeyring(b []byte) ([][]byte, string, error) {
	var f keyringFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, "", errors.New("not a keyring file")
	}
	if len(f.Keys) == 0 {
		return nil, "", errors.New("no key")
	}
	keys := make([][]byte, 0, len(f.Keys))
	for i, s := range f.Keys {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(k) != KeySize {
			return nil, "", fmt.Errorf("key %d is not base64 of %d bytes", i+1, KeySize)
		}
		if slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			return nil, "", fmt.Errorf("key %d is listed twice", i+1)
		}
		keys = append(keys, k)
	}
	return keys, f.KeyFile, nil
}

// withPrimary returns keys with key first, added if missing.
func withPrimary(keys [][]byte, key []byte) [][]byte {
	out := [][]byte{key}
	for _, k := range keys {
		if !bytes.Equal(k, key) {
			out = append(out, k)
		}
	}
	return out
}

// write replaces the keyring file with keys (the primary first).
func (k *Keyring) write(keys [][]byte) error {
	f := keyringFile{KeyFile: k.keyFile}
	for _, key := range keys {
		f.Keys = append(f.Keys, base64.StdEncoding.EncodeToString(key))
	}
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	if err := writeFileAtomic(k.path, append(b, '\n')); err != nil {
		return fmt.Errorf("gossip keyring: write %s: %w", k.path, err)
	}
	return nil
}

// Secrets returns copies of the installed keys, the primary first.
func (k *Keyring) Secrets() [][]byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.secretsLocked()
}

func (k *Keyring) secretsLocked() [][]byte {
	var out [][]byte
	for _, key := range k.ml.GetKeys() {
		out = append(out, bytes.Clone(key))
	}
	return out
}

// Keys describes the installed keys, the primary first.
func (k *Keyring) Keys() []KeyInfo {
	var out []KeyInfo
	for i, key := range k.Secrets() {
		out = append(out, KeyInfo{Fingerprint: Fingerprint(key), Primary: i == 0})
	}
	return out
}

// Install adds key to the keyring; installing an installed key changes
// nothing.
func (k *Keyring) Install(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("gossip: key must be %d bytes, got %d", KeySize, len(key))
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := k.secretsLocked()
	if slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, key) }) {
		return nil
	}
	if err := k.write(append(keys, key)); err != nil {
		return err
	}
	return k.ml.AddKey(bytes.Clone(key))
}

// Use makes the installed key with fingerprint fp the primary key.
func (k *Keyring) Use(fp string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := k.secretsLocked()
	i := k.find(keys, fp)
	if i < 0 {
		return fmt.Errorf("%w: %s", ErrKeyNotInstalled, fp)
	}
	if i == 0 {
		return nil
	}
	if err := k.write(withPrimary(keys, keys[i])); err != nil {
		return err
	}
	return k.ml.UseKey(keys[i])
}

// Remove drops the key with fingerprint fp; removing a key that is not
// installed changes nothing. The primary key cannot be removed.
func (k *Keyring) Remove(fp string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	keys := k.secretsLocked()
	i := k.find(keys, fp)
	switch {
	case i < 0:
		return nil
	case i == 0:
		return fmt.Errorf("%w: %s", ErrPrimaryKey, fp)
	}
	if err := k.write(slices.Delete(slices.Clone(keys), i, i+1)); err != nil {
		return err
	}
	return k.ml.RemoveKey(keys[i])
}

func (k *Keyring) find(keys [][]byte, fp string) int {
	return slices.IndexFunc(keys, func(key []byte) bool { return Fingerprint(key) == fp })
}

// memberlistKeyring is the keyring memberlist encrypts with: the Keyring
// of the config, or one holding only Config.Key.
func (g *Gossip) memberlistKeyring() (*memberlist.Keyring, error) {
	if g.cfg.Keyring != nil {
		return g.cfg.Keyring.ml, nil
	}
	kr, err := memberlist.NewKeyring(nil, g.cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("gossip: key: %w", err)
	}
	return kr, nil
}
