package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

const keyringUsage = `usage: nodeagent keyring list | install FILE | use KEY | remove KEY [flags]

Gossip key rotation, on every live member of the cluster at once; each
member's answer is shown, and the command fails when one did not apply it.

  list            the keys of every live member and their cluster certificates
  install FILE    install the key in FILE (- reads standard input)
  use KEY         make an installed key the primary key (refused unless every
                  live member has it)
  remove KEY      remove a key (refused while it is a member's primary key)

KEY is a fingerprint (see list), or a file holding the key, or - for standard
input. A key is a secret: it never goes into a command line.`

var fingerprintArg = regexp.MustCompile(`^[0-9a-f]{16}$`)

func runKeyring(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usagef("%s", keyringUsage)
	}
	sub := args[0]
	nargs := 1
	switch sub {
	case "list":
		nargs = 0
	case "install", "use", "remove":
	default:
		return usagef("keyring: unknown subcommand %q (list, install, use, remove)", sub)
	}
	fs := newFlags("keyring " + sub)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), keyringUsage+"\n\nflags:"); fs.PrintDefaults() }
	var cf clientFlags
	c, err := cf.parse(fs, args[1:], nargs)
	if err != nil {
		return err
	}
	method, path, body, err := keyringRequest(sub, fs.Arg(0))
	if err != nil {
		return err
	}
	var rep api.KeyringReport
	_, err = c.do(ctx, method, "/v1/keyring"+path, body, &rep)
	var ae *apiError
	if errors.As(err, &ae) && json.Unmarshal(ae.body, &rep) == nil && rep.Op != "" {
		printReport(out, rep, cf.json, ae.Status < 500)
		return fmt.Errorf("keyring %s: %w", sub, err)
	}
	if err != nil {
		return fmt.Errorf("keyring %s: %w", sub, err)
	}
	return printReport(out, rep, cf.json, false)
}

// keyringRequest turns a subcommand and its argument into an API call.
func keyringRequest(sub, arg string) (method, path string, body any, err error) {
	switch sub {
	case "list":
		return http.MethodGet, "", nil, nil
	case "install":
		key, err := readKey(arg)
		if err != nil {
			return "", "", nil, err
		}
		return http.MethodPost, "", api.KeyRequest{Key: base64.StdEncoding.EncodeToString(key)}, nil
	}
	fp := arg
	if !fingerprintArg.MatchString(arg) {
		key, err := readKey(arg)
		if err != nil {
			return "", "", nil, err
		}
		fp = gossip.Fingerprint(key)
	}
	if sub == "use" {
		return http.MethodPut, "/primary", api.PrimaryRequest{Fingerprint: fp}, nil
	}
	return http.MethodDelete, "/" + fp, nil, nil
}

// readKey reads a key from a file, or from standard input for "-". An
// argument that is a key itself is refused without being repeated.
func readKey(arg string) ([]byte, error) {
	var data []byte
	var err error
	if arg == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	} else {
		data, err = os.ReadFile(arg)
	}
	if errors.Is(err, fs.ErrNotExist) {
		if _, perr := gossip.ParseKey(arg); perr == nil {
			return nil, usagef("a key is a secret and does not belong in a command line: give the file that holds it, or - and the key on standard input")
		}
		return nil, usagef("%s is neither a fingerprint (16 hex digits, see `nodeagent keyring list`) nor a key file", arg)
	}
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := gossip.ParseKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("key in %s: %w", arg, err)
	}
	return key, nil
}

// printReport shows every member's answer, then the keys of the cluster.
// A refused operation changed nothing: the answers are the members' keys.
func printReport(out io.Writer, rep api.KeyringReport, asJSON, refused bool) error {
	switch {
	case asJSON:
		return printJSON(out, rep)
	case refused:
		fmt.Fprintf(out, "%s %s: refused, nothing changed; the keys of the live members:\n\n", rep.Op, rep.Fingerprint)
	case rep.Op != api.KeyringOpList:
		fmt.Fprintf(out, "%s %s: applied on %d of %d live members\n\n", rep.Op, rep.Fingerprint, rep.Members-rep.Failed, rep.Members)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tANSWER\tKEYS (* primary)\tCLUSTER CERTIFICATE")
	for _, n := range rep.Nodes {
		if !n.OK {
			fmt.Fprintf(tw, "%s\tFAILED\t%s\t\n", n.Node, n.Error)
			continue
		}
		var keys []string
		for _, k := range n.Keys {
			if k.Primary {
				keys = append(keys, "*"+k.Fingerprint)
			} else {
				keys = append(keys, k.Fingerprint)
			}
		}
		fmt.Fprintf(tw, "%s\tok\t%s\t%s\n", n.Node, strings.Join(keys, " "), clusterCert(n.Certificate))
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tINSTALLED\tPRIMARY")
	for _, k := range rep.Keys {
		fmt.Fprintf(tw, "%s\t%d/%d\t%d/%d\n", k.Fingerprint, k.Installed, rep.Members, k.Primary, rep.Members)
	}
	tw.Flush()
	if len(rep.Skipped) > 0 {
		fmt.Fprintf(out, "\nnot asked (not alive): %s\n", strings.Join(rep.Skipped, ", "))
	}
	return nil
}

func clusterCert(c *api.ClusterCertificate) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("issued by %s, until %s (in %s)", c.Issuer, c.NotAfter.Local().Format("2006-01-02 15:04"),
		time.Until(c.NotAfter).Round(time.Minute))
}
