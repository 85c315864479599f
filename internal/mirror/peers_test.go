package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// peerTree is a tree of n files of random content (1-6 KiB) in a few
// directories, plus one file above 1 MiB (streamed rather than held).
func peerTree(n int, seed uint64) []tnode {
	r := rand.New(rand.NewPCG(seed, 1))
	nodes := []tnode{tdir("lib", 0o755), tdir("mod", 0o755), tdir("mod/big", 0o755)}
	for i := range n {
		dir := []string{"lib", "mod"}[i%2]
		data := make([]byte, 1024+r.IntN(5*1024))
		for k := range data {
			data[k] = byte(r.Uint32())
		}
		nodes = append(nodes, tfile(fmt.Sprintf("%s/f%04d.php", dir, i), 0o644, string(data)))
	}
	big := make([]byte, 1<<20+12345)
	for k := range big {
		big[k] = byte(r.Uint32())
	}
	return append(nodes, tfile("mod/big/bundle.js", 0o644, string(big)))
}

// peerNode is a web node of a peer test: its releases and its peer
// handler served over TLS, behind an optional fault.
type peerNode struct {
	name   string
	node   *testNode
	server *mirror.PeerServer
	srv    *httptest.Server
	swarm  *mirror.Swarm
	fault  atomic.Pointer[func(http.ResponseWriter, *http.Request) http.ResponseWriter]
}

func newPeerNode(t *testing.T, name string, up mirror.PeerUpload) *peerNode {
	t.Helper()
	p := &peerNode{name: name, node: mustOpenReleases(t, mirror.ReleasesConfig{Keep: 3}), swarm: mirror.NewSwarm(nil)}
	p.server = mirror.NewPeerServer(p.node.rels, up, nil)
	h := http.StripPrefix("/cluster/v1/mirror", p.server.Handler())
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := p.fault.Load(); f != nil {
			w = (*f)(w, r)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *peerNode) client() *mirror.Client {
	return mirror.NewClient(p.srv.URL+"/cluster/v1/mirror", p.srv.Client())
}

// setFault makes the node's object streams go through wrap.
func (p *peerNode) setFault(wrap func(http.ResponseWriter, *http.Request) http.ResponseWriter) {
	p.fault.Store(&wrap)
}

// serves reports whether the node serves id.
func (p *peerNode) serves(id string) bool {
	cur, ok := p.node.rels.Current()
	return ok && cur.ID == id
}

// sources returns the Sources of a sync of self among nodes: every other
// node is a peer, complete when it serves the revision.
func sources(self *peerNode, ctl mirror.Source, nodes ...*peerNode) *mirror.Sources {
	return mirror.NewSources(mirror.SourcesConfig{
		Self: self.name, Controller: ctl, ControllerName: "ctl", Swarm: self.swarm,
		Peers: func(id string) []mirror.Peer {
			var out []mirror.Peer
			for _, n := range nodes {
				if n != self {
					out = append(out, mirror.Peer{Name: n.name, Client: n.client(), Complete: n.serves(id)})
				}
			}
			return out
		},
	})
}

// counted returns what source name gave to the node's last sync.
func counted(p *peerNode, name string) mirror.SourceCount {
	for _, c := range p.swarm.Report().Sources {
		if c.Name == name {
			return c
		}
	}
	return mirror.SourceCount{Name: name}
}

var generous = mirror.PeerUpload{Concurrency: 8}

// peerSetup is a controller with a published tree, web-1 serving it and
// web-2 new.
type peerSetup struct {
	ctl        *fakeController
	tree       []tnode
	rev        mirror.Revision
	web1, web2 *peerNode
}

func newPeerSetup(t *testing.T, files int, seed uint64) *peerSetup {
	t.Helper()
	s := &peerSetup{ctl: newFakeController(t), tree: peerTree(files, seed)}
	s.rev = s.ctl.publish(s.tree)
	s.web1, s.web2 = newPeerNode(t, "web-1", generous), newPeerNode(t, "web-2", generous)
	mustApply(t, s.web1.node, s.rev, s.ctl.client())
	s.ctl.counts()
	return s
}

func TestSyncFromAPeerThatServesTheRevision(t *testing.T) {
	s := newPeerSetup(t, 200, 1)
	ctl, tree, rev, web1, web2 := s.ctl, s.tree, s.rev, s.web1, s.web2

	mustApply(t, web2.node, rev, sources(web2, ctl.client(), web1, web2))

	checkTree(t, web2.node.target, tree)
	if c := ctl.counts(); c.objectsServed != 0 {
		t.Errorf("the controller served %d objects; want none while a peer serves the revision", c.objectsServed)
	}
	if got := counted(web2, "web-1"); got.Objects != 201 {
		t.Errorf("web-1 gave %+v; want all 201 objects", got)
	}
	if st := web1.server.Stats(); st.Bytes < 1<<20 || st.Requests == 0 {
		t.Errorf("web-1 upload stats %+v", st)
	}
	checkNoTemps(t, web2.node)
}

func TestSyncFromAPeerThatSendsCorruptBytes(t *testing.T) {
	s := newPeerSetup(t, 200, 2)
	ctl, tree, rev, web1, web2 := s.ctl, s.tree, s.rev, s.web1, s.web2
	web3 := newPeerNode(t, "web-3", generous)
	var corrupted atomic.Int64
	web1.setFault(func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
		if !strings.HasSuffix(r.URL.Path, "/objects") {
			return w
		}
		return &corruptWriter{ResponseWriter: w, at: mirror.FrameHeaderSize + 10, n: &corrupted}
	})

	mustApply(t, web2.node, rev, sources(web2, ctl.client(), web1, web2))

	checkTree(t, web2.node.target, tree)
	if corrupted.Load() == 0 {
		t.Fatal("the peer corrupted nothing: the test proves nothing")
	}
	c := counted(web2, "web-1")
	if c.State != mirror.SourceBanned || !strings.Contains(c.Reason, "does not match") {
		t.Errorf("web-1 after sending bad bytes: %+v; want banned for it", c)
	}
	if got := ctl.counts().objectsServed; got == 0 {
		t.Error("the controller served nothing: where did the good bytes come from?")
	}
	// The ban outlives the attempt: the next sync of this node does not
	// ask web-1 again.
	requests := c.Requests
	web2Again := newPeerNode(t, "web-2", generous)
	web2Again.swarm = web2.swarm
	mustApply(t, web2Again.node, rev, sources(web2Again, ctl.client(), web1, web2Again))
	if got := counted(web2Again, "web-1").Requests; got != requests {
		t.Errorf("web-1 was asked %d more times while banned", got-requests)
	}
	// Another node, whose own swarm has not met web-1 yet, also ends with
	// the right tree.
	mustApply(t, web3.node, rev, sources(web3, ctl.client(), web1, web3))
	checkTree(t, web3.node.target, tree)
}

// corruptWriter flips one byte of a response body at offset at.
type corruptWriter struct {
	http.ResponseWriter
	at, off int64
	n       *atomic.Int64
}

func (c *corruptWriter) Write(p []byte) (int, error) {
	if c.at >= c.off && c.at < c.off+int64(len(p)) {
		p = slices.Clone(p)
		p[c.at-c.off] ^= 0x55
		c.n.Add(1)
	}
	c.off += int64(len(p))
	return c.ResponseWriter.Write(p)
}

func TestSyncFromAPeerThatDiesMidTransfer(t *testing.T) {
	s := newPeerSetup(t, 300, 3)
	ctl, tree, rev, web1, web2 := s.ctl, s.tree, s.rev, s.web1, s.web2
	// web-1 dies while it sends its first object stream: the connection
	// is cut after some bytes, and from then on nothing answers there.
	var died sync.Once
	web1.setFault(func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
		if !strings.HasSuffix(r.URL.Path, "/objects") {
			return w
		}
		return &dyingWriter{ResponseWriter: w, after: 20 << 10, die: func() {
			died.Do(func() { go web1.srv.Close() })
		}}
	})

	mustApply(t, web2.node, rev, sources(web2, ctl.client(), web1, web2))

	checkTree(t, web2.node.target, tree)
	c := counted(web2, "web-1")
	if c.Failures == 0 || c.State == mirror.SourceOK {
		t.Errorf("web-1 after dying: %+v; want a failure and avoided", c)
	}
	if got := ctl.counts().objectsServed; got == 0 {
		t.Error("the controller served nothing after the peer died")
	}
	checkNoTemps(t, web2.node)
}

// dyingWriter cuts the connection once after bytes have been written.
type dyingWriter struct {
	http.ResponseWriter
	after, off int
	die        func()
}

func (d *dyingWriter) Write(p []byte) (int, error) {
	if d.off+len(p) > d.after {
		d.ResponseWriter.Write(p[:max(0, d.after-d.off)])
		d.ResponseWriter.(http.Flusher).Flush()
		d.die()
		panic(http.ErrAbortHandler) // the connection goes, as with a dead process
	}
	d.off += len(p)
	return d.ResponseWriter.Write(p)
}

func (d *dyingWriter) Flush() { d.ResponseWriter.(http.Flusher).Flush() }

func TestSyncFromPeersOnly(t *testing.T) {
	s := newPeerSetup(t, 200, 4)
	ctl, tree, rev, web1, web2 := s.ctl, s.tree, s.rev, s.web1, s.web2
	ctl.srv.Close() // the controller is gone after the publish

	mustApply(t, web2.node, rev, sources(web2, nil, web1, web2))

	checkTree(t, web2.node.target, tree)
	if got := counted(web2, "web-1"); got.Objects != 201 {
		t.Errorf("web-1 gave %+v; want every object", got)
	}
}

// A peer still listed as syncing (gossip has not noticed yet that it is
// gone) but refusing connections counts as failing from its first have
// poll: its share goes to the others at once, and status says why.
func TestSyncWithAListedPeerThatIsGone(t *testing.T) {
	s := newPeerSetup(t, 200, 7)
	ctl, tree, rev, web2 := s.ctl, s.tree, s.rev, s.web2
	gone := newPeerNode(t, "web-3", generous)
	gone.srv.Close()

	mustApply(t, web2.node, rev, sources(web2, ctl.client(), web2, gone))

	checkTree(t, web2.node.target, tree)
	got := counted(web2, "web-3")
	if got.Failures == 0 || got.State != mirror.SourceAvoided || !strings.Contains(got.Reason, "refused") {
		t.Errorf("web-3, refusing connections, is reported as %+v; want it avoided, with the refusal as reason", got)
	}
	if got := counted(web2, "ctl"); got.Objects != 201 {
		t.Errorf("the controller gave %+v; want every object", got)
	}
}

func TestSyncWithoutAnySourceFailsAndChangesNothing(t *testing.T) {
	ctl := newFakeController(t)
	tree := peerTree(20, 5)
	rev := ctl.publish(tree)
	web1 := newPeerNode(t, "web-1", generous)
	err := web1.node.rels.Apply(context.Background(), rev, sources(web1, nil, web1))
	if err == nil || !strings.Contains(err.Error(), "no source") {
		t.Fatalf("apply with no controller and no peer: %v; want a no-source error", err)
	}
	if _, ok := web1.node.rels.Current(); ok {
		t.Error("a release is current after a failed first sync")
	}
	checkNoTemps(t, web1.node)
}

func TestNewNodesSyncingTogetherFeedEachOther(t *testing.T) {
	ctl := newFakeController(t)
	tree := peerTree(400, 6)
	rev := ctl.publish(tree)
	// A slow controller link: each of its object requests takes a while,
	// so that nodes have something to give each other.
	ctl.delay = 100 * time.Millisecond
	var nodes []*peerNode
	for i := range 4 {
		nodes = append(nodes, newPeerNode(t, fmt.Sprintf("web-%d", i+1), generous))
	}
	ctl.counts()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.node.rels.Apply(context.Background(), rev, sources(n, ctl.client(), nodes...)) })
	}
	wg.Wait()
	for i, n := range nodes {
		if errs[i] != nil {
			t.Fatalf("%s: %v", n.name, errs[i])
		}
		checkTree(t, n.node.target, tree)
	}
	served := ctl.counts().objectsServed
	objects := 401
	t.Logf("controller served %d objects for %d nodes of %d objects", served, len(nodes), objects)
	if served > 2*objects {
		t.Errorf("the controller served %d objects, more than twice the tree (%d)", served, objects)
	}
	fromPeers := int64(0)
	for _, n := range nodes {
		for _, c := range n.swarm.Report().Sources {
			if c.Kind == mirror.KindPeer {
				fromPeers += c.Objects
			}
			if c.State == mirror.SourceBanned {
				t.Errorf("%s banned %s, an honest peer: %s", n.name, c.Name, c.Reason)
			}
		}
	}
	if fromPeers < int64(len(nodes)*objects-served) {
		t.Errorf("peers gave %d objects, the controller %d: %d objects unaccounted for", fromPeers, served, len(nodes)*objects-served-int(fromPeers))
	}
}

func TestPeerNeverSendsAFileAlteredOnDisk(t *testing.T) {
	s := newPeerSetup(t, 50, 7)
	ctl, tree, rev, web1, web2 := s.ctl, s.tree, s.rev, s.web1, s.web2
	// Someone with root changes a released file in place, same size.
	for _, p := range []string{"lib/f0000.php", "mod/big/bundle.js"} {
		alterInPlace(t, filepath.Join(web1.node.release(rev.ID), p))
	}

	mustApply(t, web2.node, rev, sources(web2, ctl.client(), web1, web2))

	checkTree(t, web2.node.target, tree)
	if st := web1.server.Stats(); st.Altered == 0 {
		t.Errorf("web-1 stats %+v: the altered files were not noticed", st)
	}
}

// alterInPlace flips a byte in the middle of a read-only file.
func alterInPlace(t *testing.T, p string) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	b := make([]byte, 1)
	f.ReadAt(b, fi.Size()/2)
	b[0] ^= 1
	if _, err := f.WriteAt(b, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// writeLog records, inside the peer handler, when each response writes and
// how much: every write happens while the request holds an upload slot.
type writeLog struct {
	mu     sync.Mutex
	starts []time.Time // first write of each request
	ends   []time.Time // last write of each request
	writes []timedWrite
}

type timedWrite struct {
	at time.Time
	n  int
}

type loggedWriter struct {
	http.ResponseWriter
	log     *writeLog
	idx     int
	refused bool // an error answer, outside any slot
}

func (l *loggedWriter) WriteHeader(code int) {
	l.refused = code != http.StatusOK
	l.ResponseWriter.WriteHeader(code)
}

func (l *loggedWriter) Write(p []byte) (int, error) {
	if l.refused {
		return l.ResponseWriter.Write(p)
	}
	now := time.Now()
	l.log.mu.Lock()
	if l.idx < 0 {
		l.idx = len(l.log.starts)
		l.log.starts = append(l.log.starts, now)
		l.log.ends = append(l.log.ends, now)
	}
	l.log.ends[l.idx] = now
	l.log.writes = append(l.log.writes, timedWrite{now, len(p)})
	l.log.mu.Unlock()
	return l.ResponseWriter.Write(p)
}

func TestPeerUploadRespectsItsLimits(t *testing.T) {
	const rate, concurrency = 1 << 20, 2
	ctl := newFakeController(t)
	var nodes []tnode
	for i := range 12 {
		nodes = append(nodes, tfile(fmt.Sprintf("blob%02d", i), 0o644, strings.Repeat(string(rune('a'+i)), 256<<10)))
	}
	rev := ctl.publish(nodes)
	m, _ := buildManifest(nodes)
	web1 := newPeerNode(t, "web-1", mirror.PeerUpload{Rate: rate, Concurrency: concurrency})
	mustApply(t, web1.node, rev, ctl.client())
	log := &writeLog{}
	web1.setFault(func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
		if !strings.HasSuffix(r.URL.Path, "/objects") {
			return w
		}
		return &loggedWriter{ResponseWriter: w, log: log, idx: -1}
	})

	// Six peers ask at once for two objects each (512 KiB).
	var wg sync.WaitGroup
	var served, refused atomic.Int64
	for i := range 6 {
		hashes := []mirror.Hash{m.Entries[2*i].SHA256, m.Entries[2*i+1].SHA256}
		wg.Go(func() {
			err := web1.client().Objects(context.Background(), hashes, func(mirror.Hash, int64, io.Reader) error { return nil })
			switch {
			case err == nil:
				served.Add(1)
			case errors.Is(err, mirror.ErrBusy):
				refused.Add(1)
			default:
				t.Errorf("objects: %v", err)
			}
		})
	}
	wg.Wait()
	t.Logf("served %d, refused %d (busy)", served.Load(), refused.Load())
	if served.Load() < concurrency {
		t.Fatalf("only %d of 6 requests served", served.Load())
	}
	if st := web1.server.Stats(); st.Refused != refused.Load() || st.Requests != served.Load() {
		t.Errorf("stats %+v; want %d served, %d refused", st, served.Load(), refused.Load())
	}

	// Concurrency: at no moment did more than two requests write.
	most := maxOverlap(log.starts, log.ends)
	if most > concurrency {
		t.Errorf("%d requests wrote at once; the limit is %d", most, concurrency)
	}
	if most < concurrency {
		t.Errorf("at most %d request wrote at a time: the limit of %d was never reached, the test proves nothing", most, concurrency)
	}
	// Rate: the bytes of the whole transfer took at least 3/4 of the time
	// the rate allows (a loaded machine only makes it longer), and no
	// second of it carried much more than the rate.
	var total int64
	for _, w := range log.writes {
		total += int64(w.n)
	}
	first, last := log.writes[0].at, log.writes[len(log.writes)-1].at
	minimum := time.Duration(float64(total-64<<10) / rate * float64(time.Second) * 3 / 4)
	if took := last.Sub(first); took < minimum {
		t.Errorf("%d bytes sent in %s; at %d B/s that takes at least %s", total, took, rate, minimum)
	}
	for i, w := range log.writes {
		var inWindow int64
		for _, x := range log.writes[i:] {
			if x.at.Sub(w.at) >= time.Second {
				break
			}
			inWindow += int64(x.n)
		}
		if limit := int64(rate*3/2 + 64<<10); inWindow > limit {
			t.Fatalf("%d bytes sent within one second from %s; the limit is %d B/s", inWindow, w.at.Sub(first), rate)
		}
	}
}

// maxOverlap is the largest number of [start, end] intervals that share a
// moment.
func maxOverlap(starts, ends []time.Time) int {
	most := 0
	for i := range starts {
		n := 0
		for j := range starts {
			if !starts[j].After(starts[i]) && !ends[j].Before(starts[i]) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

func TestPeerServingOff(t *testing.T) {
	ctl := newFakeController(t)
	tree := peerTree(10, 8)
	rev := ctl.publish(tree)
	web1, web2 := newPeerNode(t, "web-1", mirror.PeerUpload{}), newPeerNode(t, "web-2", generous)
	mustApply(t, web1.node, rev, ctl.client())
	m, _ := buildManifest(tree)
	err := web1.client().Objects(context.Background(), []mirror.Hash{m.Entries[3].SHA256},
		func(mirror.Hash, int64, io.Reader) error { return nil })
	if !errors.Is(err, mirror.ErrRemoteNotFound) || !strings.Contains(err.Error(), "serves no content") {
		t.Errorf("objects from a node with concurrency 0: %v; want a 404 saying it serves no content", err)
	}
	// A syncing node goes to the controller instead.
	mustApply(t, web2.node, rev, sources(web2, ctl.client(), web1, web2))
	checkTree(t, web2.node.target, tree)
}

// A peer answers in the negotiated object stream (v2, as the controller
// does) and its compressed frames are checked like any bytes: a frame
// whose zstd bytes decode to other content, or do not decode, gets the
// peer banned, and the node still ends with the right tree.
func TestSyncFromAPeerThatSendsBadCompressedObjects(t *testing.T) {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	for name, recode := range map[string]func(content []byte) []byte{
		"other content": func(content []byte) []byte {
			bad := slices.Clone(content)
			bad[len(bad)/2] ^= 0x55
			return enc.EncodeAll(bad, nil)
		},
		"not zstd": func(content []byte) []byte { return []byte("these bytes do not decompress") },
	} {
		t.Run(name, func(t *testing.T) {
			s := newPeerSetup(t, 200, 8)
			ctl, tree, rev, web1, web2 := s.ctl, s.tree, s.rev, s.web1, s.web2
			var recoded, v2 atomic.Int64
			web1.setFault(func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
				if !strings.HasSuffix(r.URL.Path, "/objects") {
					return w
				}
				return &recodeWriter{ResponseWriter: w, recode: recode, n: &recoded, v2: &v2}
			})

			mustApply(t, web2.node, rev, sources(web2, ctl.client(), web1, web2))

			checkTree(t, web2.node.target, tree)
			if v2.Load() == 0 || recoded.Load() == 0 {
				t.Fatalf("v2 streams %d, recoded frames %d: the peer sent no v2 stream to alter", v2.Load(), recoded.Load())
			}
			if c := counted(web2, "web-1"); c.State != mirror.SourceBanned || !strings.Contains(c.Reason, "does not match") {
				t.Errorf("web-1 after sending bad compressed bytes: %+v; want banned for it", c)
			}
		})
	}
}

// recodeWriter turns the first frame of a v2 object stream into a zstd
// frame of recode(content), and lets the rest through.
type recodeWriter struct {
	http.ResponseWriter
	recode      func([]byte) []byte
	n, v2       *atomic.Int64
	wroteHeader bool
	buf         []byte
	done        bool
}

func (rw *recodeWriter) WriteHeader(code int) {
	if rw.Header().Get("Content-Type") == mirror.ObjectsContentTypeV2 {
		rw.v2.Add(1)
	}
	rw.Header().Del("Content-Length") // the first frame changes size
	rw.wroteHeader = true
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recodeWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.done || rw.Header().Get("Content-Type") != mirror.ObjectsContentTypeV2 {
		return rw.ResponseWriter.Write(p)
	}
	rw.buf = append(rw.buf, p...)
	if len(rw.buf) < mirror.FrameHeaderSizeV2 {
		return len(p), nil
	}
	h, size, _, stored, err := mirror.ReadFrameHeaderV2(bytes.NewReader(rw.buf))
	if err != nil || int64(len(rw.buf)) < mirror.FrameHeaderSizeV2+stored {
		return len(p), err
	}
	content := rw.buf[mirror.FrameHeaderSizeV2 : mirror.FrameHeaderSizeV2+stored]
	bad := rw.recode(content)
	var out bytes.Buffer
	mirror.WriteFrameHeaderV2(&out, h, size, mirror.CodecZstd, int64(len(bad)))
	out.Write(bad)
	out.Write(rw.buf[mirror.FrameHeaderSizeV2+stored:])
	rw.done = true
	rw.n.Add(1)
	if _, err := rw.ResponseWriter.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (rw *recodeWriter) Flush() { rw.ResponseWriter.(http.Flusher).Flush() }
