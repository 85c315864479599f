package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nodeagent/nodeagent/internal/certs"
)

// runCerts shows the edge's certificate, or reloads it first
// (`nodeagent certs reload`).
func runCerts(ctx context.Context, args []string, out io.Writer) error {
	// "reload" may come before or after the flags.
	reload := len(args) > 0 && args[0] == "reload"
	if reload {
		args = args[1:]
	}
	fs := newFlags("certs")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: nodeagent certs [reload] [flags]\n\nShows this node's edge certificate; reload re-reads it now (files, cluster storage).")
		fs.PrintDefaults()
	}
	var cf clientFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "reload" && !reload:
		reload = true
	case fs.NArg() > 0:
		return usagef("certs: unexpected %q (usage: nodeagent certs [reload] [flags])", fs.Arg(0))
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var st certs.State
	if reload {
		_, err = c.do(ctx, http.MethodPost, "/v1/certificates/reload", nil, &st)
	} else {
		_, err = c.do(ctx, http.MethodGet, "/v1/certificates", nil, &st)
	}
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if cf.json {
		return printJSON(out, st)
	}
	if reload {
		fmt.Fprintln(out, "reloaded")
	}
	printCertState(out, st)
	return nil
}

func printCertState(out io.Writer, st certs.State) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	source := st.Source
	if st.Pending {
		source += " (pending: serving a self-signed certificate until it is issued)"
	}
	fmt.Fprintf(tw, "source\t%s\n", source)
	fmt.Fprintf(tw, "names\t%s\n", strings.Join(st.Names, ", "))
	fmt.Fprintf(tw, "not after\t%s\n", expiry(st.NotAfter))
	fmt.Fprintf(tw, "issuer\t%s\n", st.Issuer)
	fmt.Fprintf(tw, "serial\t%s\n", st.Serial)
	fmt.Fprintf(tw, "sha256\t%s\n", st.Fingerprint)
	fmt.Fprintf(tw, "loaded\t%s\n", ago(st.LoadedAt))
	lastErr := "-"
	if st.LastError != "" {
		lastErr = st.LastError
		if st.LastErrorTime != nil {
			lastErr += " (" + ago(*st.LastErrorTime) + ")"
		}
	}
	fmt.Fprintf(tw, "last error\t%s\n", lastErr)
	tw.Flush()
}

// expiry prints a certificate's end and how far away it is.
func expiry(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	left := time.Until(t)
	if left < 0 {
		return fmt.Sprintf("%s (expired)", t.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339), days(left))
}

func days(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
	return d.Round(time.Minute).String()
}

// certExpiry is the CERT EXPIRY column of `status`.
func certExpiry(t *time.Time) string {
	if t == nil {
		return "-"
	}
	if time.Until(*t) < 0 {
		return "expired"
	}
	return days(time.Until(*t))
}
