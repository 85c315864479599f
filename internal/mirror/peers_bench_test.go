package mirror_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// BenchmarkSyncFromPeer applies the benchmark tree to an empty web node
// from a peer that serves it (the controller stays unused): the cost of
// both ends of peer distribution, TLS included, on one machine.
//
//	go test -run '^$' -bench SyncFromPeer -benchtime 3x ./internal/mirror/
func BenchmarkSyncFromPeer(b *testing.B) {
	src := benchTree(b)
	_, ctl, rev := benchController(b, src)
	root := b.TempDir()
	peer := benchReleases(b, filepath.Join(root, "peer"))
	if err := peer.Apply(context.Background(), rev, mirror.NewClient(ctl.URL, ctl.Client())); err != nil {
		b.Fatal(err)
	}
	ps := mirror.NewPeerServer(peer, mirror.PeerUpload{Concurrency: 4}, nil)
	srv := httptest.NewUnstartedServer(http.StripPrefix("/cluster/v1/mirror", ps.Handler()))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	b.Cleanup(srv.Close)
	swarm := mirror.NewSwarm(nil)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		rels := benchReleases(b, filepath.Join(root, strconv.Itoa(i)))
		runtime.GC()
		b.StartTimer()
		src := mirror.NewSources(mirror.SourcesConfig{Self: "web-2", Swarm: swarm,
			Controller: mirror.NewClient(ctl.URL, ctl.Client()),
			Peers: func(string) []mirror.Peer {
				return []mirror.Peer{{Name: "web-1", Complete: true, Client: mirror.NewClient(srv.URL+"/cluster/v1/mirror", srv.Client())}}
			}})
		if err := rels.Apply(context.Background(), rev, src); err != nil {
			b.Fatal(err)
		}
	}
	if rep := swarm.Report(); len(rep.Sources) != 1 || rep.Sources[0].Name != "web-1" {
		b.Fatalf("sources %+v; want web-1 alone", rep.Sources)
	}
}
