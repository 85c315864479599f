package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
)

// clientFlags are the flags of every command that talks to an agent.
type clientFlags struct {
	addr, tokenFile, config string
	json                    bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "", "agent API URL (default $NODEAGENT_ADDR, the config's api.listen, or http://127.0.0.1:7948)")
	fs.StringVar(&c.tokenFile, "token-file", "", "API token file (default $NODEAGENT_TOKEN, or the config's api.token_file)")
	fs.StringVar(&c.config, "config", config.DefaultPath, "config file, for the address and token defaults")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

// apiClient calls the local agent's REST API.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

// parse registers the client flags on fs, parses args, checks that nargs
// arguments remain, and returns the client.
func (c *clientFlags) parse(fs *flag.FlagSet, args []string, nargs int) (*apiClient, error) {
	c.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() != nargs {
		return nil, usagef("%s takes %d argument(s), got %d (see -h)", fs.Name(), nargs, fs.NArg())
	}
	return c.client()
}

func (c *clientFlags) client() (*apiClient, error) {
	cfg, cfgErr := config.Load(c.config)
	addr := c.addr
	if addr == "" {
		addr = os.Getenv("NODEAGENT_ADDR")
	}
	if addr == "" && cfg != nil {
		addr = cfg.API.Listen
	}
	if addr == "" {
		addr = "127.0.0.1:7948"
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	token, err := c.token(cfg, cfgErr)
	if err != nil {
		return nil, err
	}
	return &apiClient{base: strings.TrimRight(addr, "/"), token: token, hc: &http.Client{}}, nil
}

// token finds the API token: -token-file, $NODEAGENT_TOKEN, or the
// config's api.token_file; cfgErr says why the config was not read.
func (c *clientFlags) token(cfg *config.Config, cfgErr error) (string, error) {
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", fmt.Errorf("-token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("NODEAGENT_TOKEN"); t != "" {
		return t, nil
	}
	if cfgErr == nil {
		return cfg.APIToken()
	}
	// cfgErr names the file it looked for: "/etc/...yaml: no such file".
	return "", fmt.Errorf("no API token: use -token-file, NODEAGENT_TOKEN, or a config with api.token_file (config %w)", cfgErr)
}

// apiError is a problem+json answer.
type apiError struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	body   []byte // the whole document, for its extension members
}

func (e *apiError) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s (%d)", e.Detail, e.Status)
	}
	return fmt.Sprintf("%s (%d)", e.Title, e.Status)
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil). It returns the status code.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w (is the agent running? see -addr)", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		e := &apiError{Status: resp.StatusCode, Title: resp.Status, body: data}
		_ = json.Unmarshal(data, e)
		return resp.StatusCode, e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
