package main

import (
	"context"
	"fmt"
	"io"

	"github.com/nodeagent/nodeagent/internal/config"
)

func runKeygen(_ context.Context, args []string, out io.Writer) error {
	fs := newFlags("keygen")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: nodeagent keygen > /etc/nodeagent/gossip.key\n\nPrints a new gossip key: base64 of 32 random bytes.")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	key, err := config.GenerateKey()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, key)
	return err
}
