package mirror

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Handler limits.
const (
	// maxObjectsRequestBytes bounds a POST /objects body: MaxObjectsPerRequest
	// quoted hex hashes and some room for whitespace.
	maxObjectsRequestBytes = MaxObjectsPerRequest*(64+3) + 4096
	// gzipMinBytes: smaller JSON responses are sent as they are.
	gzipMinBytes = 1024
	// maxMissingListed bounds the unknown hashes a 404 problem names.
	maxMissingListed   = 10
	objectsWriteBuffer = 64 << 10
)

// Handler serves the wire endpoints of wire.go to web nodes. The API mounts
// it under a prefix (http.StripPrefix) and authenticates the callers.
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /revisions", s.serveRevisions)
	mux.HandleFunc("GET /revisions/{id}", s.serveRevision)
	mux.HandleFunc("GET /manifests/{id}", s.serveManifest)
	mux.HandleFunc("POST /objects", s.serveObjects)
	return mux
}

func (s *Store) serveRevisions(w http.ResponseWriter, r *http.Request) {
	revs := s.Revisions()
	if revs == nil {
		revs = []Revision{}
	}
	serveJSON(w, r, revs)
}

func (s *Store) serveRevision(w http.ResponseWriter, r *http.Request) {
	serveRevisionIn(w, r, s.Revisions(), "kept")
}

// serveRevisionIn sends the revision of the request's id among revs, or a
// 404 saying it is not kept (held) here.
func serveRevisionIn(w http.ResponseWriter, r *http.Request, revs []Revision, kept string) {
	id := r.PathValue("id")
	for _, rev := range revs {
		if rev.ID == id {
			serveJSON(w, r, rev)
			return
		}
	}
	serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not %s here", id, kept), nil)
}

// serveManifest sends the canonical bytes of a manifest, gzipped for
// clients that accept it, or with ?base= the delta from another one.
func (s *Store) serveManifest(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if base := r.URL.Query().Get("base"); base != "" {
		s.serveDelta(w, r, id, base)
		return
	}
	km, err := s.kept(id)
	if err != nil {
		serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not kept here", id), nil)
		return
	}
	data, err := os.ReadFile(s.manifestPath(id))
	if err != nil {
		// Garbage-collected since kept() answered, or an I/O error.
		s.log.Warn("serve manifest", "id", id, "err", err)
		serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not kept here", id), nil)
		return
	}
	h := w.Header()
	etag := strconv.Quote(id) // manifests are immutable
	h.Set("ETag", etag)
	h.Set("Vary", "Accept-Encoding")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if acceptsGzip(r) {
		data, err = km.gzipped(data)
		if err != nil {
			serveProblem(w, http.StatusInternalServerError, "compress manifest: "+err.Error(), nil)
			return
		}
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// gzipped returns data (the manifest's bytes) compressed, computing it
// once per manifest.
func (km *keptManifest) gzipped(data []byte) ([]byte, error) {
	km.mu.Lock()
	defer km.mu.Unlock()
	if km.gz == nil {
		gz, err := gzipBytes(data, gzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		km.gz = gz
	}
	return km.gz, nil
}

func gzipBytes(data []byte, level int) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(data) / 4)
	zw, err := gzip.NewWriterLevel(&b, level)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (s *Store) serveDelta(w http.ResponseWriter, r *http.Request, id, base string) {
	m, err := s.manifest(id)
	if err != nil {
		s.serveManifestError(w, id, err)
		return
	}
	bm, err := s.manifest(base)
	if err != nil {
		s.serveManifestError(w, base, err)
		return
	}
	serveJSON(w, r, Diff(base, bm, m))
}

func (s *Store) serveManifestError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not kept here", id), nil)
		return
	}
	s.log.Error("load manifest", "id", id, "err", err)
	serveProblem(w, http.StatusInternalServerError, err.Error(), nil)
}

// serveObjects streams the requested objects straight from the packs. All
// hashes are resolved before the first byte is sent, so an unknown one is a
// clean 404.
func (s *Store) serveObjects(w http.ResponseWriter, r *http.Request) {
	hashes, ok := readObjectsRequest(w, r)
	if !ok {
		return
	}
	locs, missing := s.locate(hashes)
	if len(missing) > 0 {
		serveMissing(w, missing)
		return
	}
	defer func() {
		for _, l := range locs {
			l.p.release()
		}
	}()
	bodies := make([]objectBody, len(locs))
	var scratch []byte
	for i := range locs {
		bodies[i] = &packBody{objLoc: locs[i], scratch: &scratch}
	}
	if err := writeObjectStream(w, r, hashes, bodies); err != nil {
		s.log.Debug("serve objects", "err", err)
	}
}

// packBody is an object as a pack stores it: raw or compressed.
type packBody struct {
	objLoc
	scratch *[]byte // reused by the decompressions of one response
}

func (b *packBody) rawSize() int64 { return b.raw }

func (b *packBody) storedAs() (Codec, int64) { return b.codec, b.size }

// copyStored sends the object as stored (a v2 frame's body).
func (b *packBody) copyStored(w io.Writer) error {
	n, err := io.Copy(w, io.NewSectionReader(b.p.f, b.off, b.size))
	if err == nil && n != b.size {
		err = fmt.Errorf("pack %d ends after %d of %d bytes", b.p.num, n, b.size)
	}
	return err
}

// copyRaw sends the object's content (a v1 frame's body), decompressing
// it for a client of the first format.
func (b *packBody) copyRaw(w io.Writer) error {
	if b.codec == CodecRaw {
		return b.copyStored(w)
	}
	stored := slices.Grow((*b.scratch)[:0], int(b.size))[:b.size]
	*b.scratch = stored
	if _, err := b.p.f.ReadAt(stored, b.off); err != nil {
		return err
	}
	raw, err := decodeObject(stored[len(stored):], stored, b.codec, b.raw)
	if err != nil {
		return err
	}
	_, err = w.Write(raw)
	return err
}

// acceptsObjectsV2 reports whether the client asked for v2 object streams.
func acceptsObjectsV2(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), ObjectsContentTypeV2) {
			return true
		}
	}
	return false
}

// locate resolves hashes, taking a reference on each pack used; missing
// lists the unknown ones (and then nothing is held).
func (s *Store) locate(hashes []Hash) (locs []objLoc, missing []string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.opened {
		for _, h := range hashes {
			missing = append(missing, h.String())
		}
		return nil, missing
	}
	locs = make([]objLoc, len(hashes))
	for i, h := range hashes {
		l, ok := s.index[h]
		if !ok {
			missing = append(missing, h.String())
			continue
		}
		locs[i] = l
	}
	if len(missing) > 0 {
		return nil, missing
	}
	for _, l := range locs {
		l.p.acquire()
	}
	return locs, nil
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

// serveJSON sends v as JSON, gzipped when large and the client accepts it.
func serveJSON(w http.ResponseWriter, r *http.Request, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		serveProblem(w, http.StatusInternalServerError, "encode response: "+err.Error(), nil)
		return
	}
	data = append(data, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Vary", "Accept-Encoding")
	if len(data) >= gzipMinBytes && acceptsGzip(r) {
		if gz, err := gzipBytes(data, gzip.BestSpeed); err == nil {
			data = gz
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data)
}

// wireProblem is an RFC 9457 problem document; Missing lists unknown
// objects.
type wireProblem struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Status  int      `json:"status"`
	Detail  string   `json:"detail"`
	Missing []string `json:"missing,omitempty"`
}

func serveProblem(w http.ResponseWriter, status int, detail string, missing []string) {
	data, _ := json.Marshal(wireProblem{Type: "about:blank", Title: http.StatusText(status),
		Status: status, Detail: detail, Missing: missing})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}
