package main_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// TestProcessDevServesTLS: `nodeagent dev` prints each web node's https
// URL, and the edge there serves the demo tree from the node's docroot
// through the built-in backend, with a self-signed certificate.
func TestProcessDevServesTLS(t *testing.T) {
	cmd := exec.Command(binary, "dev", "-web", "1", "-dir", t.TempDir(), "-log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev after SIGINT: %v", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Error("dev did not stop within 20s of SIGINT")
		}
	}()
	edgeURL := regexp.MustCompile(`edge (https://\S+)`)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := edgeURL.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	var url string
	select {
	case url = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("no edge URL in the banner within 60s")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	testutil.Eventually(t, 30*time.Second, func() error {
		resp, err := client.Get(strings.TrimSuffix(url, "/") + "/index.php")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), "Hello from revision") {
			return fmt.Errorf("%s: %s", resp.Status, tail(string(body), 300))
		}
		if org := resp.TLS.PeerCertificates[0].Subject.Organization; len(org) == 0 || org[0] != "nodeagent self-signed" {
			return fmt.Errorf("certificate organization %v", org)
		}
		return nil
	})
}
