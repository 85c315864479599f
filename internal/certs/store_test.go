package certs_test

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestClusterStorage exercises the storage protocol between a node and the
// controller: values, missing keys as fs.ErrNotExist, prefix delete, list,
// and locks that exclude each other (across nodes and within one) and
// expire when their holder dies.
func TestClusterStorage(t *testing.T) {
	srv := storeServer(t)
	a, b := newStorage(t, srv, "web-1"), newStorage(t, srv, "web-2")
	ctx := context.Background()

	if _, err := a.Load(ctx, "certificates/x/moodle.test.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if _, err := a.Stat(ctx, "certificates"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat of a missing key: %v", err)
	}
	for _, k := range []string{"certificates/ca/moodle.test/moodle.test.crt", "certificates/ca/moodle.test/moodle.test.key", "acme/ca/users/a.json"} {
		if err := a.Store(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := b.Load(ctx, "certificates/ca/moodle.test/moodle.test.crt")
	if err != nil || string(v) != "value of certificates/ca/moodle.test/moodle.test.crt" {
		t.Fatalf("Load from the other node: %q %v", v, err)
	}
	ki, err := b.Stat(ctx, "certificates/ca/moodle.test")
	if err != nil || ki.IsTerminal || ki.Key != "certificates/ca/moodle.test" {
		t.Fatalf("Stat of a directory: %+v %v", ki, err)
	}
	if !b.Exists(ctx, "acme/ca/users/a.json") || b.Exists(ctx, "acme/nope") {
		t.Fatal("Exists")
	}
	keys, err := b.List(ctx, "certificates", true)
	slices.Sort(keys)
	if err != nil || !slices.Contains(keys, "certificates/ca/moodle.test/moodle.test.key") {
		t.Fatalf("List: %v %v", keys, err)
	}
	if err := b.Delete(ctx, "certificates/ca"); err != nil {
		t.Fatal(err)
	}
	if a.Exists(ctx, "certificates/ca/moodle.test/moodle.test.crt") || !a.Exists(ctx, "acme/ca/users/a.json") {
		t.Fatal("Delete of a prefix removed too little or too much")
	}

	// Locks exclude each other.
	if ok, err := a.TryLock(ctx, "issue_cert_moodle.test"); !ok || err != nil {
		t.Fatalf("TryLock: %v %v", ok, err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_moodle.test"); ok || err != nil {
		t.Fatalf("second TryLock: %v %v, want false", ok, err)
	}
	// Two goroutines of one node exclude each other too.
	if ok, err := a.TryLock(ctx, "issue_cert_moodle.test"); ok || err != nil {
		t.Fatalf("TryLock by the holding node: %v %v, want false", ok, err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Lock(ctx, "issue_cert_moodle.test") }()
	select {
	case err := <-done:
		t.Fatalf("Lock returned while held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := a.Unlock(ctx, "issue_cert_moodle.test"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_moodle.test"); err != nil {
		t.Fatal(err)
	}

	// A holder that dies (no more renewals) loses the lock when its lease
	// runs out.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/locks?name=renew&owner=dead-node&ttl=1s", nil)
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("raw lock: %v %v", resp, err)
	}
	resp.Body.Close()
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.Lock(lctx, "renew"); err != nil {
		t.Fatalf("lock of a dead holder: %v", err)
	}
	a.Unlock(ctx, "renew")
	if err := lctx.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestStoreRefusesPathsOutside: keys with .. or absolute paths are refused.
func TestStoreRefusesPathsOutside(t *testing.T) {
	srv := storeServer(t)
	for _, q := range []string{"key=../x", "key=/etc/passwd", "key=a/../../x", "key=", "key=."} {
		for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(method, srv.URL+"/keys?"+q, nil)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %s: %d, want 400", method, q, resp.StatusCode)
			}
		}
	}
	resp, err := srv.Client().Get(srv.URL + "/list?prefix=../")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("list ../: %d", resp.StatusCode)
	}
}
