package mirror

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Source serves published revisions to a web node: a controller's mirror
// handler through *Client, or a fake in tests. Nothing it returns is trusted:
// Releases verifies manifests against their id and objects against their
// hash.
type Source interface {
	// Revision returns the metadata of the revision id.
	Revision(ctx context.Context, id string) (Revision, error)
	// Manifest returns the canonical manifest bytes of id.
	Manifest(ctx context.Context, id string) ([]byte, error)
	// Delta returns the delta from base to id; ErrRemoteNotFound if the
	// source does not know base (or id).
	Delta(ctx context.Context, id, base string) (*Delta, error)
	// Objects streams the content of hashes: fn is called with a reader of
	// exactly size bytes for each object, once or again after a failed
	// delivery, in any order and possibly from several goroutines at once
	// (Sources fetches from several peers). An error of fn wrapping
	// errContentMismatch rejects that object's bytes only: the source may
	// go on, and returns such an error at the end if it delivered nothing
	// better.
	Objects(ctx context.Context, hashes []Hash, fn func(h Hash, size int64, r io.Reader) error) error
}

var _ Source = (*Client)(nil)

// ErrRemoteNotFound is returned by Client when the controller (or a peer)
// does not serve what was asked (HTTP 404): an unknown revision, an unknown
// delta base, objects it does not hold.
var ErrRemoteNotFound = errors.New("not found there")

// ErrBusy is returned by Client when the server is too busy to answer now
// (HTTP 503): a peer serving as many requests as it allows.
var ErrBusy = errors.New("busy")

// Size limits of the documents a Client reads: a hostile or broken
// controller cannot make a web node buffer without bound.
const (
	maxManifestBytes  = 256 << 20
	maxRevisionsBytes = 16 << 20
	maxErrorBodyBytes = 512
	objectsReadBuffer = 256 << 10
)

// Client talks to a controller's mirror handler (see wire.go).
type Client struct {
	base string
	hc   *http.Client
	idle time.Duration // see do
}

// clientIdleTimeout is how long a request may make no progress.
const clientIdleTimeout = 60 * time.Second

// NewClient returns a client of the mirror handler at baseURL (for example
// https://10.0.0.4:7947/cluster/v1/mirror). hc carries the transport, with
// mutual TLS in the agent; nil means http.DefaultClient.
func NewClient(baseURL string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), hc: hc, idle: clientIdleTimeout}
}

// Revision returns the metadata of the published revision id.
func (c *Client) Revision(ctx context.Context, id string) (Revision, error) {
	var revs []Revision
	if err := c.getJSON(ctx, "/revisions", maxRevisionsBytes, &revs); err != nil {
		return Revision{}, fmt.Errorf("revision %s: %w", id, err)
	}
	for _, r := range revs {
		if r.ID == id {
			return r, nil
		}
	}
	return Revision{}, fmt.Errorf("revision %s: %w", id, ErrRemoteNotFound)
}

// Manifest returns the manifest bytes of id as served; the caller verifies
// them with DecodeManifest.
func (c *Client) Manifest(ctx context.Context, id string) ([]byte, error) {
	// Asking for gzip ourselves, rather than letting the transport do it,
	// lets us read the uncompressed size first and allocate it once: a
	// manifest of a large tree is tens of megabytes.
	resp, err := c.do(ctx, http.MethodGet, "/manifests/"+url.PathEscape(id), nil, "Accept-Encoding", "gzip")
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	defer resp.Body.Close()
	data, err := readLimited(resp, maxManifestBytes)
	if err == nil && resp.Header.Get("Content-Encoding") == "gzip" {
		data, err = gunzipLimited(data, maxManifestBytes)
	}
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", id, err)
	}
	return data, nil
}

// gunzipLimited decompresses gz into a buffer of the size its trailer
// announces, failing if the content exceeds limit or that size.
func gunzipLimited(gz []byte, limit int64) ([]byte, error) {
	if len(gz) < 18 {
		return nil, errors.New("gunzip: truncated")
	}
	size := int64(binary.LittleEndian.Uint32(gz[len(gz)-4:]))
	if size > limit {
		return nil, fmt.Errorf("gunzip: content exceeds %d bytes", limit)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(zr, data); err != nil {
		return nil, fmt.Errorf("gunzip: %w", err)
	}
	if n, err := zr.Read(make([]byte, 1)); n > 0 || err != io.EOF {
		return nil, fmt.Errorf("gunzip: content exceeds its announced %d bytes (%v)", size, err)
	}
	return data, nil
}

// Delta returns the delta that turns the manifest base into id.
func (c *Client) Delta(ctx context.Context, id, base string) (*Delta, error) {
	p := "/manifests/" + url.PathEscape(id) + "?base=" + url.QueryEscape(base)
	var d Delta
	if err := c.getJSON(ctx, p, maxManifestBytes, &d); err != nil {
		return nil, fmt.Errorf("delta %s..%s: %w", base, id, err)
	}
	return &d, nil
}

// Objects asks for hashes in one request and calls fn for each frame of the
// response as it arrives, in order, with a reader limited to the frame's
// content; the caller verifies the content. A content mismatch reported by
// fn skips that object and is returned at the end. It fails with ErrFrame
// if the stream carries more or fewer frames than requested, and with
// io.ErrUnexpectedEOF if a frame is cut short.
func (c *Client) Objects(ctx context.Context, hashes []Hash, fn func(h Hash, size int64, r io.Reader) error) error {
	body, err := json.Marshal(ObjectsRequest{Objects: hashes})
	if err != nil {
		return fmt.Errorf("objects: %w", err)
	}
	resp, err := c.do(ctx, http.MethodPost, "/objects", body, "Content-Type", "application/json",
		"Accept", ObjectsContentTypeV2+", "+ObjectsContentType+";q=0.5")
	if err != nil {
		return fmt.Errorf("objects: %w", err)
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, objectsReadBuffer)
	switch ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct {
	case ObjectsContentType: // a controller older than compression
		err = readFrames(br, hashes, false, fn)
	case ObjectsContentTypeV2:
		err = readFrames(br, hashes, true, fn)
	default:
		err = fmt.Errorf("%w: content type %q", ErrFrame, ct)
	}
	if err != nil {
		return fmt.Errorf("objects: %w", err)
	}
	return nil
}

// readFrames reads the frames of want from r (v2 frames when v2), in
// order, then expects the end. Compressed objects are decompressed whole
// (they are at most compressMax bytes) and handed to fn from memory; bytes
// that do not decompress are handed on as an object of wrong content,
// which fn's hash check refuses. A content mismatch reported by fn is
// returned at the end: the other objects of the stream are still good.
func readFrames(r io.Reader, want []Hash, v2 bool, fn func(h Hash, size int64, r io.Reader) error) error {
	var mismatch error
	var stored []byte
	for i := 0; ; i++ {
		h, size, codec, n, err := readFrameHeader(r, v2)
		if err == io.EOF {
			if i < len(want) {
				return fmt.Errorf("%w: stream ended after %d of %d objects", ErrFrame, i, len(want))
			}
			return mismatch
		}
		if err != nil {
			return err
		}
		if i == len(want) {
			return fmt.Errorf("%w: more than the %d objects asked", ErrFrame, len(want))
		}
		if h != want[i] {
			return fmt.Errorf("%w: got object %s, want %s", ErrFrame, h, want[i])
		}
		fr := &frameReader{r: r, n: n}
		var body io.Reader = fr
		if codec != CodecRaw {
			stored = slices.Grow(stored[:0], int(n))[:n]
			if _, err := io.ReadFull(fr, stored); err != nil {
				return err
			}
			raw, _ := decodeObject(make([]byte, 0, size), stored, codec, size)
			body = &heldReader{Reader: bytes.NewReader(raw), data: raw}
		}
		if err := fn(h, size, body); errors.Is(err, errContentMismatch) {
			mismatch = firstError(mismatch, err)
		} else if err != nil {
			return err
		}
		// Skip what fn left unread, so the next header is in place.
		if _, err := io.Copy(io.Discard, fr); err != nil {
			return err
		}
	}
}

// readFrameHeader reads a v2 frame header, or a v1 one (a raw object:
// what is sent is the content).
func readFrameHeader(r io.Reader, v2 bool) (h Hash, size int64, codec Codec, sent int64, err error) {
	if v2 {
		return ReadFrameHeaderV2(r)
	}
	h, size, err = ReadFrameHeader(r)
	return h, size, CodecRaw, size, err
}

// heldReader is an object already in memory: a receiver that keeps
// objects whole takes its bytes without copying them.
type heldReader struct {
	*bytes.Reader
	data []byte
}

// frameReader reads exactly n bytes of r: an early end of r is
// io.ErrUnexpectedEOF, not a clean io.EOF.
type frameReader struct {
	r io.Reader
	n int64
}

func (f *frameReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > f.n {
		p = p[:f.n]
	}
	n, err := f.r.Read(p)
	f.n -= int64(n)
	if err == io.EOF && f.n > 0 {
		err = fmt.Errorf("%w: object cut short", io.ErrUnexpectedEOF)
	}
	return n, err
}

func (c *Client) getJSON(ctx context.Context, p string, limit int64, v any) error {
	resp, err := c.do(ctx, http.MethodGet, p, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := readLimited(resp, limit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", p, err)
	}
	return nil
}

// do sends a request with the given header pairs and returns the response
// if its status is 200; any other status is an error (ErrRemoteNotFound for
// 404) and the body is closed. The request fails if it makes no progress
// (connecting, waiting for headers, reading the body) for the idle timeout:
// a stalled controller must not hold a sync forever.
func (c *Client) do(ctx context.Context, method, p string, body []byte, header ...string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stall := fmt.Errorf("%s %s: %w after %s", method, p, errStalled, c.idle)
	timer := time.AfterFunc(c.idle, func() { cancel(stall) })
	req, err := http.NewRequestWithContext(ctx, method, c.base+p, rd)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel(nil)
		return nil, stalledOr(ctx, err)
	}
	resp.Body = &watchedBody{rc: resp.Body, ctx: ctx, timer: timer, idle: c.idle, cancel: cancel}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	err = fmt.Errorf("%s %s: %s: %s", method, p, resp.Status, bytes.TrimSpace(msg))
	switch resp.StatusCode {
	case http.StatusNotFound:
		err = fmt.Errorf("%w: %w", ErrRemoteNotFound, err)
	case http.StatusServiceUnavailable:
		err = fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return nil, err
}

// errStalled reports a request that made no progress for too long.
var errStalled = errors.New("no progress")

// stalledOr returns the stall error if ctx was cancelled by it, else err.
func stalledOr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return cause
	}
	return err
}

// watchedBody restarts the idle timer on every read that returns data.
type watchedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelCauseFunc
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF {
		err = stalledOr(b.ctx, err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// readLimited reads the body of resp, failing if it exceeds limit bytes.
func readLimited(resp *http.Response, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 && n <= limit {
		buf.Grow(int(n))
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("body exceeds %d bytes", limit)
	}
	return buf.Bytes(), nil
}
