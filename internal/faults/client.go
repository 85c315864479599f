package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/mirror"
)

// client returns an HTTP client whose connections start in node's
// namespace. Certificates are not checked (self-signed edges, the cluster
// CA): a load balancer's probe does not either. No keep-alive: every probe
// is a new connection, as after a restart.
func (c *Cluster) client(node string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:       c.lab.DialContext(node),
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DisableKeepAlives: true,
	}}
}

// localAPI calls node's local API with the token and decodes the JSON
// answer into out (if not nil); it returns the status code.
func (c *Cluster) localAPI(ctx context.Context, node, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://127.0.0.1:7948"+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer faults-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.local[node].Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s on %s: %w", method, path, node, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s on %s: %w", method, path, node, err)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s on %s: %s: %s", method, path, node, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s on %s: %w", method, path, node, err)
		}
	}
	return resp.StatusCode, nil
}

// Status is node's GET /v1/status.
func (c *Cluster) Status(ctx context.Context, node string) (api.Status, error) {
	var st api.Status
	_, err := c.localAPI(ctx, node, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// Members returns name -> state of the members node sees. It reads the
// names case-blind: the Go-named fields of today and the snake_case ones
// of the agreed /v1/members format both decode.
func (c *Cluster) Members(ctx context.Context, node string) (map[string]string, error) {
	var doc struct {
		Members []struct{ Name, State string }
	}
	if _, err := c.localAPI(ctx, node, http.MethodGet, "/v1/members", nil, &doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range doc.Members {
		out[m.Name] = m.State
	}
	return out, nil
}

// Drain sets (on) or clears node's drain flag.
func (c *Cluster) Drain(ctx context.Context, node string, on bool) error {
	method := http.MethodDelete
	if on {
		method = http.MethodPut
	}
	_, err := c.localAPI(ctx, node, method, "/v1/drain", nil, nil)
	return err
}

// publish asks the controller to publish the source tree as it is.
func (c *Cluster) publish(ctx context.Context, msg string) (mirror.Revision, error) {
	var resp api.PublishResponse
	_, err := c.localAPI(ctx, Controller, http.MethodPost, "/v1/revisions", api.PublishRequest{Message: msg}, &resp)
	return resp.Revision, err
}

// Ready probes node's /readyz on the cluster API as the load balancer
// does: true on 200, with the body for the record.
func (c *Cluster) Ready(ctx context.Context, node string) (bool, string) {
	code, body, err := c.lbGet(ctx, "https://"+c.lab.Addr(node)+":7947/readyz")
	if err != nil {
		return false, err.Error()
	}
	return code == http.StatusOK, body
}

// Served fetches rev.txt through node's edge from the load balancer; ok
// is false unless the edge answered 200.
func (c *Cluster) Served(ctx context.Context, node string) (string, bool) {
	code, body, err := c.lbGet(ctx, "https://"+c.lab.Addr(node)+":443/"+revFile)
	return body, err == nil && code == http.StatusOK
}

func (c *Cluster) lbGet(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = "moodle.test"
	resp, err := c.lb.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// Metric reads an unlabelled series from node's /metrics.
func (c *Cluster) Metric(ctx context.Context, node, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:7948/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.local[node].Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not on %s", name, node)
}
