package mirror

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// PeerUpload bounds what a web node sends to its peers, so that serving
// them never starves the web server of the node's bandwidth or CPU.
type PeerUpload struct {
	// Rate is the bytes per second sent to all peers together (0: no
	// bound).
	Rate int64
	// Concurrency is how many content requests are served at once; others
	// wait up to peerSlotWait, then are refused with 503 (0: the node
	// serves no content to peers).
	Concurrency int
}

// Peer serving limits.
const (
	peerSlotWait  = 2 * time.Second
	peerRateBurst = 64 << 10
	// haveMaxWait bounds how long a have request waits for news, and
	// haveCoalesce lets a burst of stored objects go out in one answer.
	haveMaxWait  = 10 * time.Second
	haveCoalesce = 100 * time.Millisecond
)

// PeerServer serves a web node's content to the other agents on the
// cluster API: the same paths and object stream as the controller's
// handler (wire.go), for the revision the node serves and the one it is
// building, plus GET /have/{id} (have.go). Every file is checked against its
// hash while it is sent: a file altered on disk is never sent whole (the
// stream is cut before its last bytes), and the receivers verify every byte
// anyway, treating a mismatch as the sender's fault.
type PeerServer struct {
	rels  *Releases
	cfg   PeerUpload
	lim   *rate.Limiter
	slots chan struct{}
	log   *slog.Logger

	bytes, requests, refused, altered atomic.Int64
}

// PeerUploadStats counts what a PeerServer sent.
type PeerUploadStats struct {
	Bytes    int64 `json:"bytes"`    // content and manifest bytes sent
	Requests int64 `json:"requests"` // content and manifest requests served
	Refused  int64 `json:"refused"`  // refused as busy (503)
	Altered  int64 `json:"altered"`  // files found altered on disk, not sent
	Active   int   `json:"active"`   // requests being served now
}

// NewPeerServer returns the peer handler of the web node whose releases are
// rels.
func NewPeerServer(rels *Releases, cfg PeerUpload, log *slog.Logger) *PeerServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lim := rate.NewLimiter(rate.Inf, peerRateBurst)
	if cfg.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), peerRateBurst)
	}
	return &PeerServer{rels: rels, cfg: cfg, lim: lim, slots: make(chan struct{}, max(cfg.Concurrency, 0)), log: log}
}

// Stats returns what the server sent so far.
func (p *PeerServer) Stats() PeerUploadStats {
	return PeerUploadStats{Bytes: p.bytes.Load(), Requests: p.requests.Load(), Refused: p.refused.Load(),
		Altered: p.altered.Load(), Active: len(p.slots)}
}

// Handler serves the peer endpoints; the API mounts it where the
// controller mounts its mirror handler.
func (p *PeerServer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /revisions", p.serveRevisions)
	mux.HandleFunc("GET /revisions/{id}", p.serveRevision)
	mux.HandleFunc("GET /manifests/{id}", p.limited(p.serveManifest))
	mux.HandleFunc("POST /objects", p.limited(p.serveObjects))
	mux.HandleFunc("GET /have/{id}", p.serveHave)
	return mux
}

// heldRevisions are the kept releases and the one being built.
func (p *PeerServer) heldRevisions() []Revision {
	revs := p.rels.List()
	if b, ok := p.rels.inBuild(); ok {
		revs = append(revs, b)
	}
	return revs
}

func (p *PeerServer) serveRevisions(w http.ResponseWriter, r *http.Request) {
	serveJSON(w, r, p.heldRevisions())
}

func (p *PeerServer) serveRevision(w http.ResponseWriter, r *http.Request) {
	serveRevisionIn(w, r, p.heldRevisions(), "held")
}

// limited runs h within the upload bounds: a slot (or 503 after
// peerSlotWait) and the rate.
func (p *PeerServer) limited(h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p.cfg.Concurrency <= 0 {
			serveProblem(w, http.StatusNotFound, "this node serves no content to peers (mirror.peer_upload.concurrency is 0)", nil)
			return
		}
		t := time.NewTimer(peerSlotWait)
		defer t.Stop()
		select {
		case p.slots <- struct{}{}:
		case <-t.C:
			p.refused.Add(1)
			w.Header().Set("Retry-After", "1")
			serveProblem(w, http.StatusServiceUnavailable, "busy serving other peers", nil)
			return
		case <-r.Context().Done():
			return
		}
		defer func() { <-p.slots }()
		p.requests.Add(1)
		h(&rateWriter{ResponseWriter: w, ctx: r.Context(), lim: p.lim, n: &p.bytes}, r)
	}
}

// serveManifest sends the canonical bytes of a held manifest, checked
// against its id, gzipped for clients that accept it. Deltas come from the
// controller only.
func (p *PeerServer) serveManifest(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.URL.Query().Get("base") != "" {
		serveProblem(w, http.StatusNotFound, "deltas are served by the controller", nil)
		return
	}
	if !p.holds(id) {
		serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not held here", id), nil)
		return
	}
	data, err := os.ReadFile(p.rels.metaFile(manifestsDir, id))
	if err == nil {
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != id {
			p.altered.Add(1)
			err = fmt.Errorf("%w: the manifest file does not hash to its id", errAltered)
		}
	}
	if err != nil {
		p.log.Warn("peers: manifest not served", "id", id, "err", err)
		serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not held here", id), nil)
		return
	}
	if acceptsGzip(r) {
		if gz, err := gzipBytes(data, gzip.BestSpeed); err == nil {
			data = gz
			w.Header().Set("Content-Encoding", "gzip")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

func (p *PeerServer) holds(id string) bool {
	for _, rev := range p.heldRevisions() {
		if rev.ID == id {
			return true
		}
	}
	return false
}

// serveObjects streams the requested objects from the files of the current
// release or of the build in progress.
func (p *PeerServer) serveObjects(w http.ResponseWriter, r *http.Request) {
	hashes, ok := readObjectsRequest(w, r)
	if !ok {
		return
	}
	files, missing := p.rels.locate(hashes)
	if len(missing) > 0 {
		serveMissing(w, missing)
		return
	}
	bodies := make([]objectBody, len(files))
	for i, f := range files {
		bodies[i] = &fileBody{objectFile: f, hash: hashes[i]}
	}
	err := writeObjectStream(w, r, hashes, bodies)
	if errors.Is(err, errAltered) {
		p.altered.Add(1)
		p.log.Error("peers: a release file does not match its manifest; not sent", "err", err)
	} else if err != nil {
		p.log.Debug("peers: serve objects", "err", err)
	}
}

// errAltered reports a held file whose content is not its manifest's.
var errAltered = errors.New("altered on disk")

// fileBody is an object's content in a release file, checked while sent.
type fileBody struct {
	objectFile
	hash Hash
}

func (b *fileBody) rawSize() int64 { return b.size }

// storedAs: a release file travels raw (compressing it again would cost
// the sender's CPU for a link between peers).
func (b *fileBody) storedAs() (Codec, int64) { return CodecRaw, b.size }

func (b *fileBody) copyStored(w io.Writer) error { return b.copyRaw(w) }

// copyRaw sends the file, hashing it, and holds its last chunk back until
// the hash matches: a file altered on disk is never sent whole.
func (b *fileBody) copyRaw(w io.Writer) error {
	f, err := os.OpenFile(b.path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() != b.size {
		return fmt.Errorf("%w: %s is %s of %d bytes, want a file of %d", errAltered, b.path, fi.Mode().Type(), fi.Size(), b.size)
	}
	buf := make([]byte, min(b.size, fetchBufferSize))
	hs := sha256.New()
	var held []byte
	for left := b.size; left > 0; {
		if _, err := w.Write(held); err != nil {
			return err
		}
		held = buf[:min(left, int64(len(buf)))]
		if _, err := io.ReadFull(f, held); err != nil {
			return fmt.Errorf("%w: %s: %w", errAltered, b.path, err)
		}
		hs.Write(held)
		left -= int64(len(held))
	}
	if Hash(hs.Sum(nil)) != b.hash {
		return fmt.Errorf("%w: %s does not hash to %s", errAltered, b.path, b.hash)
	}
	_, err = w.Write(held)
	return err
}

// rateWriter sends a response within the upload rate and counts it.
type rateWriter struct {
	http.ResponseWriter
	ctx context.Context
	lim *rate.Limiter
	n   *atomic.Int64
}

func (rw *rateWriter) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		k := min(len(p), rw.lim.Burst())
		if err := rw.lim.WaitN(rw.ctx, k); err != nil {
			return done, err
		}
		n, err := rw.ResponseWriter.Write(p[:k])
		done += n
		rw.n.Add(int64(n))
		if err != nil {
			return done, err
		}
		p = p[k:]
	}
	return done, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (rw *rateWriter) Unwrap() http.ResponseWriter { return rw.ResponseWriter }
