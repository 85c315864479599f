package faults

import (
	"context"
	"net/http"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

// backend is the web server behind a web node's edge (nginx's part): it
// serves the files of mirror.target on 127.0.0.1:8080 in the node's
// namespace, resolving the symlink at each request as nginx does with
// $realpath_root.
type backend struct {
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

func startBackend(lab *netlab.Lab, node, target string) (*backend, error) {
	ln, err := lab.Listen(node, "tcp", "127.0.0.1:8080")
	if err != nil {
		return nil, err
	}
	b := &backend{done: make(chan struct{}), srv: &http.Server{
		Handler:           http.FileServer(http.Dir(target)),
		ReadHeaderTimeout: 10 * time.Second,
	}}
	go func() {
		defer close(b.done)
		b.srv.Serve(ln)
	}()
	return b, nil
}

func (b *backend) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if b.srv.Shutdown(ctx) != nil {
		b.srv.Close()
	}
	<-b.done
}
