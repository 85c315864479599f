package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errQuiet ends with status 1 after the command printed its own report.
var errQuiet = errors.New("")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "run the agent", runAgent},
		{"dev", "run a whole local cluster (1 controller + N web nodes)", runDev},
		{"publish", "publish the source tree (controller)", runPublish},
		{"status", "show the cluster", runStatus},
		{"revisions", "list revisions (controller) or releases (web)", runRevisions},
		{"wait", "wait until this node serves the cluster target, showing sync progress", runWait},
		{"rollback", "make an older revision the cluster target", runRollback},
		{"maintenance", "cluster-wide maintenance: on [-m MSG] [-allow CIDR]... [-for D] | off | status", runMaintenance},
		{"drain", "take this node out of the load balancer", runDrain(true)},
		{"undrain", "put this node back into the load balancer", runDrain(false)},
		{"deploy", "maintenance on, publish, wait for every web node, run, maintenance off", runDeploy},
		{"verify", "check the served release against its manifest; -repair puts it back (web)", runVerify},
		{"certs", "show the edge certificate; certs reload: reload it now", runCerts},
		{"db", "controller: dump [-wait] | dumps | restore NAME -host H ... [-switch]", runDB},
		{"keygen", "print a new gossip key", runKeygen},
		{"keyring", "gossip key rotation on every live member: list | install FILE | use KEY | remove KEY", runKeyring},
		{"forget", "forget members gone for good (after a scale-in) on every agent: NODE...", runForget},
		{"version", "print version, commit, Go version", runVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return usagef("missing command")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout)
		}
	}
	printUsage(stderr)
	return usagef("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: nodeagent <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'nodeagent <command> -h' for the flags of a command.")
}

func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "nodeagent:", err)
		return 2
	case errors.Is(err, errQuiet):
		return 1
	default:
		fmt.Fprintln(stderr, "nodeagent:", err)
		return 1
	}
}

// newFlags returns a flag set whose parse errors are usage errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("nodeagent "+name, flag.ContinueOnError)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	return nil
}

// signalContext is cancelled at the first SIGINT/SIGTERM; a second one
// forces exit.
func signalContext(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		fmt.Fprintln(os.Stderr, "nodeagent: second signal, exiting now")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
