package mirror

import (
	"bufio"
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
	id := r.PathValue("id")
	for _, rev := range s.Revisions() {
		if rev.ID == id {
			serveJSON(w, r, rev)
			return
		}
	}
	serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not kept here", id), nil)
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
	var req ObjectsRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxObjectsRequestBytes)).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			serveProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit), nil)
			return
		}
		serveProblem(w, http.StatusBadRequest, "decode objects request: "+err.Error(), nil)
		return
	}
	if len(req.Objects) > MaxObjectsPerRequest {
		serveProblem(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%d objects asked, at most %d per request", len(req.Objects), MaxObjectsPerRequest), nil)
		return
	}
	locs, missing := s.locate(req.Objects)
	if len(missing) > 0 {
		listed := missing[:min(len(missing), maxMissingListed)]
		serveProblem(w, http.StatusNotFound, fmt.Sprintf("%d unknown objects: %s", len(missing), strings.Join(listed, ", ")), listed)
		return
	}
	defer func() {
		for _, l := range locs {
			l.p.release()
		}
	}()
	v2 := acceptsObjectsV2(r)
	var total int64
	for _, l := range locs {
		if v2 {
			total += FrameHeaderSizeV2 + l.size
		} else {
			total += FrameHeaderSize + l.raw
		}
	}
	ct := ObjectsContentType
	if v2 {
		ct = ObjectsContentTypeV2
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
	bw := bufio.NewWriterSize(w, objectsWriteBuffer)
	var scratch []byte
	for i, l := range locs {
		var err error
		if v2 {
			err = writeStoredObject(bw, req.Objects[i], l)
		} else {
			scratch, err = writeRawObject(bw, req.Objects[i], l, scratch)
		}
		if err != nil {
			// The response is cut short of its Content-Length: the client
			// sees the failure.
			s.log.Debug("serve objects", "err", err)
			return
		}
	}
	bw.Flush()
}

// writeStoredObject sends an object as its pack stores it (a v2 frame).
func writeStoredObject(w io.Writer, h Hash, l objLoc) error {
	if err := WriteFrameHeaderV2(w, h, l.raw, l.codec, l.size); err != nil {
		return err
	}
	return copyStored(w, h, l)
}

func copyStored(w io.Writer, h Hash, l objLoc) error {
	n, err := io.Copy(w, io.NewSectionReader(l.p.f, l.off, l.size))
	if err == nil && n != l.size {
		err = fmt.Errorf("object %s: pack %d ends after %d of %d bytes", h, l.p.num, n, l.size)
	}
	return err
}

// writeRawObject sends an object's content (a v1 frame), decompressing it
// for a client of the first format.
func writeRawObject(w io.Writer, h Hash, l objLoc, scratch []byte) ([]byte, error) {
	if err := WriteFrameHeader(w, h, l.raw); err != nil {
		return scratch, err
	}
	if l.codec == CodecRaw {
		return scratch, copyStored(w, h, l)
	}
	stored := slices.Grow(scratch[:0], int(l.size))[:l.size]
	if _, err := l.p.f.ReadAt(stored, l.off); err != nil {
		return scratch, fmt.Errorf("object %s: %w", h, err)
	}
	raw, err := decodeObject(stored[len(stored):], stored, l.codec, l.raw)
	if err != nil {
		return scratch, fmt.Errorf("object %s: %w", h, err)
	}
	_, err = w.Write(raw)
	return stored, err
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
