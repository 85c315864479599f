package certs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// defaultLease is how long a lock outlives its holder's last renewal;
// holders renew every third of it.
const defaultLease = 30 * time.Second

// ClusterStorage is a certmagic.Storage on the controller's StoreHandler:
// every node of the cluster reads and writes the same certificates, ACME
// account and challenge tokens, and takes the same locks.
type ClusterStorage struct {
	base  func() (string, error) // URL of the handler, resolved per call
	hc    *http.Client
	owner string
	lease time.Duration

	mu     sync.Mutex
	held   map[string]heldLock
	wg     sync.WaitGroup
	closed bool
}

var (
	_ certmagic.Storage          = (*ClusterStorage)(nil)
	_ certmagic.TryLocker        = (*ClusterStorage)(nil)
	_ certmagic.LockLeaseRenewer = (*ClusterStorage)(nil)
)

// NewClusterStorage returns a storage that calls the handler at the URL base
// returns (e.g. the controller's cluster API found through gossip) with hc
// (a client with the cluster certificate). node names the lock owner.
func NewClusterStorage(base func() (string, error), hc *http.Client, node string) *ClusterStorage {
	var b [6]byte
	rand.Read(b[:])
	return &ClusterStorage{base: base, hc: hc, owner: node + "-" + hex.EncodeToString(b[:]), lease: defaultLease, held: map[string]heldLock{}}
}

// Close stops renewing the leases of held locks (they then expire).
func (s *ClusterStorage) Close() error {
	s.mu.Lock()
	s.closed = true
	for name, h := range s.held {
		h.stop()
		delete(s.held, name)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// resolve returns the storage URL, waiting up to resolveWait for one (a
// node that just started has not met the controller yet).
func (s *ClusterStorage) resolve(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveWait)
	defer cancel()
	for {
		base, err := s.base()
		if err == nil {
			return base, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("certificate storage: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// resolveWait bounds how long a call waits for the storage to be known.
const resolveWait = 30 * time.Second

// call sends one request; 404 becomes fs.ErrNotExist.
func (s *ClusterStorage) call(ctx context.Context, method, path string, q url.Values, body []byte) (int, []byte, error) {
	base, err := s.resolve(ctx)
	if err != nil {
		return 0, nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path+"?"+q.Encode(), rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("certificate storage: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxValue+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("certificate storage: %s %s: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return resp.StatusCode, nil, fmt.Errorf("certificate storage: %s: %w", q.Encode(), fs.ErrNotExist)
	case resp.StatusCode >= 400 && resp.StatusCode != http.StatusConflict:
		return resp.StatusCode, nil, fmt.Errorf("certificate storage: %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return resp.StatusCode, data, nil
}

// Store implements certmagic.Storage.
func (s *ClusterStorage) Store(ctx context.Context, key string, value []byte) error {
	_, _, err := s.call(ctx, http.MethodPut, "/keys", url.Values{"key": {key}}, value)
	return err
}

// Load implements certmagic.Storage.
func (s *ClusterStorage) Load(ctx context.Context, key string) ([]byte, error) {
	_, b, err := s.call(ctx, http.MethodGet, "/keys", url.Values{"key": {key}}, nil)
	return b, err
}

// Delete implements certmagic.Storage.
func (s *ClusterStorage) Delete(ctx context.Context, key string) error {
	_, _, err := s.call(ctx, http.MethodDelete, "/keys", url.Values{"key": {key}}, nil)
	return err
}

// Exists implements certmagic.Storage.
func (s *ClusterStorage) Exists(ctx context.Context, key string) bool {
	_, err := s.Stat(ctx, key)
	return err == nil
}

// List implements certmagic.Storage.
func (s *ClusterStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	_, b, err := s.call(ctx, http.MethodGet, "/list", url.Values{"prefix": {prefix}, "recursive": {strconv.FormatBool(recursive)}}, nil)
	if err != nil {
		return nil, err
	}
	var out struct {
		Keys []string `json:"keys"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("certificate storage: list: %w", err)
	}
	return out.Keys, nil
}

// Stat implements certmagic.Storage.
func (s *ClusterStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	_, b, err := s.call(ctx, http.MethodGet, "/stat", url.Values{"key": {key}}, nil)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	var ki keyInfo
	if err := json.Unmarshal(b, &ki); err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certificate storage: stat: %w", err)
	}
	return certmagic.KeyInfo{Key: ki.Key, Modified: ki.Modified, Size: ki.Size, IsTerminal: ki.Terminal}, nil
}

func lockQuery(name, owner string, ttl time.Duration) url.Values {
	return url.Values{"name": {name}, "owner": {owner}, "ttl": {ttl.String()}}
}

// heldLock is a lock this storage holds: the owner token it was taken
// with (one per acquisition, so two goroutines of one node exclude each
// other too) and the cancel of its lease renewal.
type heldLock struct {
	owner string
	stop  context.CancelFunc
}

// TryLock implements certmagic.TryLocker: it takes the lock if free and
// keeps its lease renewed until Unlock.
func (s *ClusterStorage) TryLock(ctx context.Context, name string) (bool, error) {
	var b [6]byte
	rand.Read(b[:])
	owner := s.owner + "/" + hex.EncodeToString(b[:])
	code, _, err := s.call(ctx, http.MethodPost, "/locks", lockQuery(name, owner, s.lease), nil)
	if err != nil || code == http.StatusConflict {
		return false, err
	}
	s.keepRenewed(name, owner)
	return true, nil
}

// Lock implements certmagic.Locker: it waits until the lock is free (or
// its holder's lease ran out).
func (s *ClusterStorage) Lock(ctx context.Context, name string) error {
	wait := 100 * time.Millisecond
	for {
		ok, err := s.TryLock(ctx, name)
		if ok {
			return nil
		}
		if err != nil && ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lock %s: %w", name, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Unlock implements certmagic.Locker.
func (s *ClusterStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h, ok := s.held[name]
	if ok {
		h.stop()
		delete(s.held, name)
	}
	s.mu.Unlock()
	if !ok {
		return nil // not ours (any more)
	}
	_, _, err := s.call(ctx, http.MethodDelete, "/locks", lockQuery(name, h.owner, s.lease), nil)
	return err
}

// RenewLockLease implements certmagic.LockLeaseRenewer.
func (s *ClusterStorage) RenewLockLease(ctx context.Context, name string, d time.Duration) error {
	s.mu.Lock()
	h, ok := s.held[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("lock %s: not held", name)
	}
	return s.renew(ctx, name, h.owner, d)
}

func (s *ClusterStorage) renew(ctx context.Context, name, owner string, d time.Duration) error {
	code, _, err := s.call(ctx, http.MethodPut, "/locks", lockQuery(name, owner, d), nil)
	if err == nil && code == http.StatusConflict {
		err = fmt.Errorf("lock %s: lease lost", name)
	}
	return err
}

// keepRenewed renews the lease of a held lock every third of the lease.
func (s *ClusterStorage) keepRenewed(name, owner string) {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		return
	}
	s.held[name] = heldLock{owner: owner, stop: cancel}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// A failed renewal is retried at the next tick; a lease
				// lost meanwhile only means another node may work too,
				// which certmagic tolerates (it rechecks storage).
				s.renew(ctx, name, owner, s.lease)
			}
		}
	}()
}
