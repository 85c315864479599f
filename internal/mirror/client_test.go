package mirror_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sha256 "github.com/minio/sha256-simd"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

func TestClientReportsUnknownRevisions(t *testing.T) {
	ctl := newFakeController(t)
	rev := ctl.publish(siteTree("v1"))
	c := ctl.client()
	ctx := context.Background()
	unknown := "00000000000000000000000000000000000000000000000000000000000000ff"

	if _, err := c.Revision(ctx, unknown); !errors.Is(err, mirror.ErrRemoteNotFound) {
		t.Errorf("revision: %v", err)
	}
	if _, err := c.Manifest(ctx, unknown); !errors.Is(err, mirror.ErrRemoteNotFound) {
		t.Errorf("manifest: %v", err)
	}
	if _, err := c.Delta(ctx, rev.ID, unknown); !errors.Is(err, mirror.ErrRemoteNotFound) {
		t.Errorf("delta from an unknown base: %v", err)
	}
	got, err := c.Revision(ctx, rev.ID)
	if err != nil || got != rev {
		t.Errorf("revision = %+v, %v; want %+v", got, err, rev)
	}
	data, err := c.Manifest(ctx, rev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mirror.DecodeManifest(data, rev.ID); err != nil {
		t.Error(err)
	}
}

func TestClientObjectsStreamsFrames(t *testing.T) {
	ctl := newFakeController(t)
	ctl.publish(siteTree("v1"))
	want := [][]byte{[]byte("<?php // shared body\n"), {}, []byte("#!/bin/sh\necho run\n")}
	var hashes []mirror.Hash
	for _, b := range want {
		hashes = append(hashes, sha256.Sum256(b))
	}
	var got [][]byte
	err := ctl.client().Objects(context.Background(), hashes, func(h mirror.Hash, size int64, r io.Reader) error {
		b, err := io.ReadAll(r)
		if h != hashes[len(got)] || int64(len(b)) != size {
			t.Errorf("frame %d: %s, %d of %d bytes", len(got), h, len(b), size)
		}
		got = append(got, b)
		return err
	})
	if err != nil || len(got) != len(want) {
		t.Fatalf("objects: %d frames, %v", len(got), err)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("object %d = %q; want %q", i, got[i], want[i])
		}
	}
}

func TestClientObjectsRefusesAnotherContentType(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>proxy error page</html>"))
	}))
	defer srv.Close()
	called := false
	err := mirror.NewClient(srv.URL, srv.Client()).Objects(context.Background(), []mirror.Hash{{1}},
		func(mirror.Hash, int64, io.Reader) error { called = true; return nil })
	if !errors.Is(err, mirror.ErrFrame) || called {
		t.Errorf("objects: %v (fn called: %v); want ErrFrame", err, called)
	}
}

func TestClientManifestRefusesAGzipTrailerThatLies(t *testing.T) {
	data := []byte(`{"version":1,"entries":[` + "\n]}\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	for name, isize := range map[string]uint32{"smaller": uint32(len(data) - 1), "larger": uint32(len(data) + 1), "huge": 1 << 31} {
		t.Run(name, func(t *testing.T) {
			body := bytes.Clone(gz.Bytes())
			binary.LittleEndian.PutUint32(body[len(body)-4:], isize)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", "gzip")
				w.Write(body)
			}))
			defer srv.Close()
			if got, err := mirror.NewClient(srv.URL, srv.Client()).Manifest(context.Background(), "x"); err == nil {
				t.Errorf("manifest = %q; want an error", got)
			}
		})
	}
}

func TestClientGivesUpOnAStalledController(t *testing.T) {
	for _, stallAfterHeaders := range []bool{false, true} {
		t.Run(fmt.Sprint("after headers: ", stallAfterHeaders), func(t *testing.T) {
			release := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if stallAfterHeaders {
					w.Header().Set("Content-Type", mirror.ObjectsContentType)
					mirror.WriteFrameHeader(w, mirror.Hash{1}, 100)
					w.Write([]byte("partial"))
					w.(http.Flusher).Flush()
				}
				<-release
			}))
			defer srv.Close()
			defer close(release)
			c := mirror.NewClient(srv.URL, srv.Client())
			mirror.SetClientIdleTimeout(c, 50*time.Millisecond)
			err := c.Objects(context.Background(), []mirror.Hash{{1}}, func(_ mirror.Hash, _ int64, r io.Reader) error {
				_, err := io.Copy(io.Discard, r)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), "no progress") {
				t.Errorf("objects: %v; want a stall error", err)
			}
		})
	}
}
