package dump

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// credentials is a private directory holding the 0600 files through which
// a password reaches a tool; remove deletes it.
type credentials struct {
	dir      string
	user     string
	password string
}

// newCredentials reads the password file ("" = no password).
func newCredentials(user, passwordFile, key string) (*credentials, error) {
	c := &credentials{user: user}
	if passwordFile == "" {
		return c, nil
	}
	raw, err := os.ReadFile(passwordFile)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %s: %w", key, passwordFile, err)
	}
	c.password = strings.TrimSpace(string(raw))
	clear(raw)
	if strings.ContainsAny(c.password, "\n\r\x00") {
		return nil, fmt.Errorf("%s: %s: the password spans lines", key, passwordFile)
	}
	return c, nil
}

// file writes content to a new 0600 file in the private directory.
func (c *credentials) file(name, content string) (string, error) {
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "nodeagent-db-")
		if err != nil {
			return "", fmt.Errorf("credentials: %w", err)
		}
		c.dir = dir
	}
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	return path, nil
}

// remove deletes the credential files.
func (c *credentials) remove() {
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir = ""
	}
}

// pgpass returns the path of a PGPASSFILE for the user, or "" when there is
// no password. Fields of a .pgpass line escape ':' and '\'.
func (c *credentials) pgpass() (string, error) {
	if c.password == "" {
		return "", nil
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return c.file("pgpass", "*:*:*:"+esc.Replace(c.user)+":"+esc.Replace(c.password)+"\n")
}

// myDefaults returns the path of a mysql option file with the user and
// password, for --defaults-extra-file.
func (c *credentials) myDefaults() (string, error) {
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	content := "[client]\nuser=\"" + esc.Replace(c.user) + "\"\n"
	if c.password != "" {
		content += "password=\"" + esc.Replace(c.password) + "\"\n"
	}
	return c.file("my.cnf", content)
}
