// Command loadhelper runs the loadtest backend or load inside a machine
// (the test under real systemd and bench/restart copy it into their
// systemd-nspawn root):
//
//	loadhelper backend ADDR
//	loadhelper load -edge URL [-probe URL] [-workers N] [-slow D] [-http2]
//	loadhelper get URL
//
// load runs until its standard input ends, then prints the summary as
// JSON; a "snapshot" line on standard input prints the counts so far. get
// sends one GET (waiting up to a minute, e.g. in an accept queue) and
// fails unless it answers 200.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nodeagent/nodeagent/internal/loadtest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadhelper:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: loadhelper backend ADDR | load -edge URL ...")
	}
	switch args[0] {
	case "backend":
		if len(args) != 2 {
			return fmt.Errorf("usage: loadhelper backend ADDR")
		}
		return http.ListenAndServe(args[1], loadtest.Backend())
	case "load":
		return load(args[1:])
	case "get":
		if len(args) != 2 {
			return fmt.Errorf("usage: loadhelper get URL")
		}
		return get(args[1])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadtest.Config
	fs.StringVar(&cfg.Edge, "edge", "", "the edge's HTTPS base URL")
	fs.StringVar(&cfg.Probe, "probe", "", "readiness URL to poll")
	fs.IntVar(&cfg.Workers, "workers", 4, "keep-alive clients")
	fs.DurationVar(&cfg.Slow, "slow", 0, "keep one slow request of this length in flight")
	fs.BoolVar(&cfg.HTTP2, "http2", false, "negotiate HTTP/2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l := loadtest.Start(cfg)
	enc := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if strings.TrimSpace(in.Text()) == "snapshot" {
			enc.Encode(l.Snapshot().Summary())
		}
	}
	res := l.Stop()
	return enc.Encode(res.Summary())
}

func get(url string) error {
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the node's self-signed certificate
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
