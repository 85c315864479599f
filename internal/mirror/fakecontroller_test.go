package mirror_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// tnode describes one entry of a test tree.
type tnode struct {
	path   string
	typ    mirror.Type
	mode   uint32
	data   string
	target string
}

func tdir(p string, mode uint32) tnode { return tnode{path: p, typ: mirror.TypeDir, mode: mode} }
func tfile(p string, mode uint32, data string) tnode {
	return tnode{path: p, typ: mirror.TypeFile, mode: mode, data: data}
}
func tlink(p, target string) tnode {
	return tnode{path: p, typ: mirror.TypeSymlink, mode: 0o777, target: target}
}

// buildManifest turns nodes into a manifest (sorted, not validated) and the
// content of its files.
func buildManifest(nodes []tnode) (*mirror.Manifest, map[mirror.Hash][]byte) {
	objects := map[mirror.Hash][]byte{}
	m := &mirror.Manifest{}
	for _, n := range nodes {
		e := mirror.Entry{Path: n.path, Type: n.typ, Mode: n.mode, Target: n.target}
		if n.typ == mirror.TypeFile {
			e.SHA256 = sha256.Sum256([]byte(n.data))
			e.Size = int64(len(n.data))
			objects[e.SHA256] = []byte(n.data)
		}
		m.Entries = append(m.Entries, e)
	}
	slices.SortFunc(m.Entries, func(a, b mirror.Entry) int { return strings.Compare(a.Path, b.Path) })
	return m, objects
}

// Object stream faults the fake controller can inject.
type objectFault int

const (
	faultNone     objectFault = iota
	faultCorrupt              // the first object's bytes are altered (same size)
	faultTruncate             // the stream stops in the middle of the first object
	faultReorder              // the frames come in reverse order (or an unasked one first)
	faultShort                // the stream ends cleanly without the last frame
)

// fakeController serves revisions per the wire protocol of wire.go, over
// TLS, under /cluster/v1/mirror, and counts what it is asked.
type fakeController struct {
	srv *httptest.Server

	mu        sync.Mutex
	revs      []mirror.Revision
	manifests map[string][]byte
	objects   map[mirror.Hash][]byte
	faults    []objectFault // consumed one per objects request
	always    objectFault   // applied when faults is empty
	noDelta   bool          // answer every delta with 404
	delay     time.Duration // before each objects answer: a slow link

	objectRequests, objectsServed, manifestRequests, deltaRequests int
}

func newFakeController(t *testing.T) *fakeController {
	t.Helper()
	f := &fakeController{manifests: map[string][]byte{}, objects: map[mirror.Hash][]byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /revisions", f.serveRevisions)
	mux.HandleFunc("GET /manifests/{id}", f.serveManifest)
	mux.HandleFunc("POST /objects", f.serveObjects)
	f.srv = httptest.NewTLSServer(http.StripPrefix("/cluster/v1/mirror", mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeController) client() *mirror.Client {
	return mirror.NewClient(f.srv.URL+"/cluster/v1/mirror", f.srv.Client())
}

// publish records nodes as the next revision.
func (f *fakeController) publish(nodes []tnode) mirror.Revision {
	m, objects := buildManifest(nodes)
	data := m.Encode()
	return f.publishRaw(m.ID(), data, objects)
}

// publishRaw records data under id, whatever they are.
func (f *fakeController) publishRaw(id string, data []byte, objects map[mirror.Hash][]byte) mirror.Revision {
	f.mu.Lock()
	defer f.mu.Unlock()
	rev := mirror.Revision{Seq: uint64(len(f.revs) + 1), ID: id, Created: time.Now().UTC().Truncate(time.Second), Message: "test"}
	f.revs = append(f.revs, rev)
	f.manifests[id] = data
	for h, b := range objects {
		f.objects[h] = b
	}
	return rev
}

func (f *fakeController) setFaults(always objectFault, once ...objectFault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always, f.faults = always, once
}

type fakeCounts struct{ objectRequests, objectsServed, manifestRequests, deltaRequests int }

// counts returns the counters and resets them.
func (f *fakeController) counts() fakeCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := fakeCounts{f.objectRequests, f.objectsServed, f.manifestRequests, f.deltaRequests}
	f.objectRequests, f.objectsServed, f.manifestRequests, f.deltaRequests = 0, 0, 0, 0
	return c
}

func (f *fakeController) serveRevisions(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(f.revs)
}

func (f *fakeController) serveManifest(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := r.PathValue("id")
	data, ok := f.manifests[id]
	if !ok {
		http.NotFound(w, r)
		return
	}
	base := r.URL.Query().Get("base")
	if base == "" {
		f.manifestRequests++
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") { // as the real handler
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			zw.Write(data)
			zw.Close()
			return
		}
		w.Write(data)
		return
	}
	f.deltaRequests++
	baseData, ok := f.manifests[base]
	if !ok || f.noDelta {
		http.NotFound(w, r)
		return
	}
	d := mirror.Diff(base, looseDecode(baseData), looseDecode(data))
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(d)
}

// looseDecode parses manifest bytes without any check, as a broken or
// hostile controller would serve them.
func looseDecode(data []byte) *mirror.Manifest {
	var doc struct{ Entries []mirror.Entry }
	json.Unmarshal(data, &doc)
	return &mirror.Manifest{Entries: doc.Entries}
}

type frame struct {
	h    mirror.Hash
	data []byte
}

func (f *fakeController) serveObjects(w http.ResponseWriter, r *http.Request) {
	var req mirror.ObjectsRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.objectRequests++
	fault := f.always
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	var frames []frame
	for _, h := range req.Objects {
		b, ok := f.objects[h]
		if !ok {
			f.mu.Unlock()
			http.Error(w, "unknown object "+h.String(), http.StatusNotFound)
			return
		}
		frames = append(frames, frame{h, b})
	}
	f.objectsServed += len(frames)
	delay := f.delay
	var other frame // an object that was not asked for
	for h, b := range f.objects {
		if !slices.Contains(req.Objects, h) {
			other = frame{h, b}
			break
		}
	}
	f.mu.Unlock()
	time.Sleep(delay)

	w.Header().Set("Content-Type", mirror.ObjectsContentType)
	switch fault {
	case faultCorrupt:
		bad := bytes.Clone(frames[0].data)
		if len(bad) == 0 {
			bad = []byte("x") // an empty object cannot be altered in place
		} else {
			bad[0] ^= 0xff
		}
		frames[0].data = bad
	case faultReorder:
		if len(frames) > 1 {
			slices.Reverse(frames)
		} else {
			frames = append([]frame{other}, frames...)
		}
	case faultShort:
		frames = frames[:len(frames)-1]
	}
	for i, fr := range frames {
		mirror.WriteFrameHeader(w, fr.h, int64(len(fr.data)))
		if fault == faultTruncate && i == 0 {
			w.Write(fr.data[:len(fr.data)/2])
			return
		}
		w.Write(fr.data)
	}
}
