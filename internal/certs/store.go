package certs

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/certmagic"
)

// The cluster storage protocol, below the prefix the caller mounts the
// handler at (the agent: /cluster/v1/certstore). Keys and lock names travel
// in the query:
//
//	GET    /keys?key=K            the value (404: none)
//	PUT    /keys?key=K            store the body
//	DELETE /keys?key=K            delete K and every key below it
//	GET    /stat?key=K            {"key","modified","size","terminal"} (404: none)
//	GET    /list?prefix=P&recursive=1   {"keys":[...]} (404: none)
//	POST   /locks?name=N&owner=O&ttl=30s   take the lock: 200, or 409 {"owner","expires"}
//	PUT    /locks?name=N&owner=O&ttl=30s   renew the lease: 200, or 409 when lost
//	DELETE /locks?name=N&owner=O  release

// maxValue bounds a stored value: certificates, keys, account data and
// challenge tokens are a few KiB.
const maxValue = 1 << 20

// StoreHandler serves a certmagic.FileStorage rooted at dir to the cluster,
// with leased locks. It does no I/O until a request comes.
func StoreHandler(dir string, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &storeServer{fs: &certmagic.FileStorage{Path: dir}, log: log.With("component", "certstore")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /keys", s.load)
	mux.HandleFunc("PUT /keys", s.store)
	mux.HandleFunc("DELETE /keys", s.delete)
	mux.HandleFunc("GET /stat", s.stat)
	mux.HandleFunc("GET /list", s.list)
	mux.HandleFunc("POST /locks", s.lock)
	mux.HandleFunc("PUT /locks", s.renew)
	mux.HandleFunc("DELETE /locks", s.unlock)
	return mux
}

type storeServer struct {
	fs     *certmagic.FileStorage
	leases leases
	log    *slog.Logger
}

// KeyInfo is the JSON form of certmagic.KeyInfo.
type keyInfo struct {
	Key      string    `json:"key"`
	Modified time.Time `json:"modified"`
	Size     int64     `json:"size"`
	Terminal bool      `json:"terminal"`
}

// key returns the key of the request: a relative slash path without "."
// or ".." elements (so no request reaches outside dir).
func key(w http.ResponseWriter, r *http.Request, param string) (string, bool) {
	k := r.URL.Query().Get(param)
	if k == "" || k == "." || !fs.ValidPath(k) {
		http.Error(w, param+": a relative key without . or .. elements is required", http.StatusBadRequest)
		return "", false
	}
	return k, true
}

func (s *storeServer) fail(w http.ResponseWriter, op string, err error) {
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	s.log.Error("certificate storage", "op", op, "err", err)
	http.Error(w, op+": "+err.Error(), http.StatusInternalServerError)
}

func (s *storeServer) load(w http.ResponseWriter, r *http.Request) {
	k, ok := key(w, r, "key")
	if !ok {
		return
	}
	b, err := s.fs.Load(r.Context(), k)
	if err != nil {
		s.fail(w, "load", err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(b)
}

func (s *storeServer) store(w http.ResponseWriter, r *http.Request) {
	k, ok := key(w, r, "key")
	if !ok {
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValue))
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if err := s.fs.Store(r.Context(), k, b); err != nil {
		s.fail(w, "store", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *storeServer) delete(w http.ResponseWriter, r *http.Request) {
	k, ok := key(w, r, "key")
	if !ok {
		return
	}
	if err := s.fs.Delete(r.Context(), k); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.fail(w, "delete", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *storeServer) stat(w http.ResponseWriter, r *http.Request) {
	k, ok := key(w, r, "key")
	if !ok {
		return
	}
	ki, err := s.fs.Stat(r.Context(), k)
	if err != nil {
		s.fail(w, "stat", err)
		return
	}
	writeJSON(w, http.StatusOK, keyInfo{Key: ki.Key, Modified: ki.Modified, Size: ki.Size, Terminal: ki.IsTerminal})
}

func (s *storeServer) list(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query().Get("prefix")
	if p != "" && !fs.ValidPath(p) {
		http.Error(w, "prefix: a relative key without . or .. elements", http.StatusBadRequest)
		return
	}
	recursive, _ := strconv.ParseBool(r.URL.Query().Get("recursive"))
	keys, err := s.fs.List(r.Context(), p, recursive)
	if err != nil {
		s.fail(w, "list", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"keys": keys})
}

// lockParams reads name, owner and ttl of a lock request.
func lockParams(w http.ResponseWriter, r *http.Request) (name, owner string, ttl time.Duration, ok bool) {
	q := r.URL.Query()
	name, owner = q.Get("name"), q.Get("owner")
	if name == "" || owner == "" {
		http.Error(w, "name and owner are required", http.StatusBadRequest)
		return "", "", 0, false
	}
	ttl = defaultLease
	if t := q.Get("ttl"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			http.Error(w, "ttl: "+err.Error(), http.StatusBadRequest)
			return "", "", 0, false
		}
		ttl = d
	}
	return name, owner, ttl, true
}

func (s *storeServer) lock(w http.ResponseWriter, r *http.Request) {
	name, owner, ttl, ok := lockParams(w, r)
	if !ok {
		return
	}
	got, holder := s.leases.try(name, owner, ttl, time.Now())
	if !got {
		writeJSON(w, http.StatusConflict, holder)
		return
	}
	s.log.Debug("lock taken", "name", name, "owner", owner, "ttl", ttl)
	w.WriteHeader(http.StatusOK)
}

func (s *storeServer) renew(w http.ResponseWriter, r *http.Request) {
	name, owner, ttl, ok := lockParams(w, r)
	if !ok {
		return
	}
	if !s.leases.renew(name, owner, ttl, time.Now()) {
		http.Error(w, "lock not held by "+owner, http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *storeServer) unlock(w http.ResponseWriter, r *http.Request) {
	name, owner, _, ok := lockParams(w, r)
	if !ok {
		return
	}
	s.leases.release(name, owner)
	s.log.Debug("lock released", "name", name, "owner", owner)
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
