package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// GossipKeySize is the length of the AES-256 gossip key.
const GossipKeySize = 32

// GossipKey reads gossip.key_file: the standard base64 encoding of exactly
// 32 bytes, surrounding whitespace allowed. The agent calls it at start so
// an unreadable or malformed key stops it with one line naming
// gossip.key_file and the path. Errors never contain the file's content.
// (`nodeagent dev` generates its own key and does not call this.)
func (c *Config) GossipKey() ([]byte, error) {
	const key = "gossip.key_file"
	path := c.Gossip.KeyFile
	raw, err := readSecret(key, path)
	if err != nil {
		return nil, err
	}
	defer clear(raw)
	text := bytes.TrimSpace(raw)
	k := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(k, text)
	if err != nil {
		clear(k)
		return nil, fmt.Errorf("%s: %s: not a base64 key (create one with `nodeagent keygen`)", key, path)
	}
	if n != GossipKeySize {
		clear(k)
		return nil, fmt.Errorf("%s: %s: key is %d bytes, want %d (create one with `nodeagent keygen`)", key, path, n, GossipKeySize)
	}
	return k[:n], nil
}

// APIToken reads api.token_file: the bearer token for admin calls, trimmed
// of surrounding whitespace; it must not be empty. Errors name
// api.token_file and the path, never the content.
func (c *Config) APIToken() (string, error) {
	return readTrimmed("api.token_file", c.API.TokenFile, true)
}

// Password reads db.password_file, trimmed of surrounding whitespace. An
// empty password_file means no password. Errors name db.password_file and
// the path, never the content.
func (d *DBConfig) Password() (string, error) {
	if d.PasswordFile == "" {
		return "", nil
	}
	return readTrimmed("db.password_file", d.PasswordFile, false)
}

// GenerateKey returns a new gossip key: base64 of 32 random bytes, as
// written by `nodeagent keygen`.
func GenerateKey() (string, error) {
	k := make([]byte, GossipKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

func readTrimmed(key, path string, nonEmpty bool) (string, error) {
	raw, err := readSecret(key, path)
	if err != nil {
		return "", err
	}
	defer clear(raw)
	s := strings.TrimSpace(string(raw))
	if nonEmpty && s == "" {
		return "", fmt.Errorf("%s: %s: file is empty", key, path)
	}
	return s, nil
}

// readSecret reads a secret file. Its errors come from the file system
// (they name the path and the cause) and never include content.
func readSecret(key, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s: not set", key)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %s: %w", key, path, err)
	}
	return raw, nil
}
