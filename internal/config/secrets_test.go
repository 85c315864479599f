package config_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/config"
)

func MustWriteFile(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestGossipKey(t *testing.T) {
	key, err := config.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := config.GenerateKey()
	if key == other {
		t.Fatal("GenerateKey returned the same key twice")
	}
	c := config.Default()
	c.Gossip.KeyFile = MustWriteFile(t, "\n  "+key+"\n")
	got, err := c.GossipKey()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := base64.StdEncoding.DecodeString(key)
	if len(got) != 32 || !bytes.Equal(got, want) {
		t.Errorf("GossipKey = %x, want %x", got, want)
	}
}

func TestGossipKeyErrors(t *testing.T) {
	const secret = "S3CRETS3CRETS3CRET"
	short := base64.StdEncoding.EncodeToString([]byte(secret)) // 18 bytes
	long := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(secret, 2)))
	tests := []struct {
		name    string
		content *string // nil: file missing
		want    string
	}{
		{"missing", nil, "no such file or directory"},
		{"empty", ptr(""), "key is 0 bytes, want 32"},
		{"short", &short, "key is 18 bytes, want 32"},
		{"long", &long, "key is 36 bytes, want 32"},
		{"not base64", ptr(secret + "!!"), "not a base64 key"},
		{"raw bytes", ptr(strings.Repeat("k", 32)), "key is 24 bytes, want 32"},
		{"unpadded", ptr(strings.TrimRight(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcde")), "=")), "not a base64 key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gossip.key")
			if tt.content != nil {
				path = MustWriteFile(t, *tt.content)
			}
			c := config.Default()
			c.Gossip.KeyFile = path
			k, err := c.GossipKey()
			if err == nil {
				t.Fatalf("GossipKey = %x, want an error", k)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "gossip.key_file: "+path+": ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q: want gossip.key_file, the path and %q", msg, tt.want)
			}
			if strings.Contains(msg, secret) || (tt.content != nil && *tt.content != "" && strings.Contains(msg, *tt.content)) {
				t.Errorf("error leaks the file content: %q", msg)
			}
			if tt.content == nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing file: errors.Is(err, fs.ErrNotExist) = false")
			}
		})
	}
	c := config.Default()
	c.Gossip.KeyFile = ""
	if _, err := c.GossipKey(); err == nil || !strings.HasPrefix(err.Error(), "gossip.key_file: ") {
		t.Errorf("unset key_file: %v", err)
	}
}

func TestGossipKeyUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := MustWriteFile(t, "x")
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.Gossip.KeyFile = path
	if _, err := c.GossipKey(); err == nil || !strings.Contains(err.Error(), "gossip.key_file: "+path+": permission denied") {
		t.Errorf("unreadable: %v", err)
	}
}

func TestAPIToken(t *testing.T) {
	c := config.Default()
	c.API.TokenFile = MustWriteFile(t, "  tok-123 \n")
	if tok, err := c.APIToken(); err != nil || tok != "tok-123" {
		t.Errorf("APIToken = %q, %v", tok, err)
	}
	for name, path := range map[string]string{
		"empty":   MustWriteFile(t, " \n"),
		"missing": filepath.Join(t.TempDir(), "nope"),
		"unset":   "",
	} {
		c.API.TokenFile = path
		if _, err := c.APIToken(); err == nil || !strings.HasPrefix(err.Error(), "api.token_file: "+path) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDBPassword(t *testing.T) {
	d := &config.DBConfig{PasswordFile: MustWriteFile(t, "hunter2\n")}
	if pw, err := d.Password(); err != nil || pw != "hunter2" {
		t.Errorf("Password = %q, %v", pw, err)
	}
	d.PasswordFile = ""
	if pw, err := d.Password(); err != nil || pw != "" {
		t.Errorf("no password_file: %q, %v", pw, err)
	}
	d.PasswordFile = filepath.Join(t.TempDir(), "nope")
	if _, err := d.Password(); err == nil || !strings.HasPrefix(err.Error(), "db.password_file: "+d.PasswordFile) {
		t.Errorf("missing: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }
