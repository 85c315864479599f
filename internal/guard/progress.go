package guard

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Handler wraps h so that each request's body and response must keep
// moving, through the connection's deadlines (http.ResponseController, so
// HTTP/1 connections and HTTP/2 streams alike):
//
//   - body: the read deadline is set BodyWindow ahead when reading starts,
//     and moved again only once BodyMinBytes more have arrived and a
//     quarter window has passed; a client that trickles (one byte every
//     20 s) or stalls is cut within a window, while an upload of any size
//     and length that keeps moving goes on. A body the handler leaves
//     unread (an error answer) must then arrive within one window, as the
//     server reads it to reuse the connection.
//   - response: before each write or flush, the write deadline is moved
//     WriteWindow ahead when less than half of it is left.
//
// Hijacked connections (WebSockets) are left alone once hijacked.
func (l Limits) Handler(h http.Handler) http.Handler {
	if l.BodyWindow <= 0 && l.WriteWindow <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := &progress{rc: http.NewResponseController(w), l: &l, http1: r.ProtoMajor == 1}
		if p.http1 && l.WriteWindow > 0 {
			// A deadline left by the last request on this connection
			// must not cut the server's own writes (100 Continue).
			_ = p.rc.SetWriteDeadline(time.Time{})
		}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 && l.BodyWindow > 0 {
			p.body = true
			r2 := new(http.Request)
			*r2 = *r
			r2.Body = &progressBody{ReadCloser: r.Body, p: p}
			r = r2
		}
		pw := &progressWriter{ResponseWriter: w, p: p}
		defer p.finish()
		h.ServeHTTP(pw, r)
	})
}

// progress is the deadline state of one request.
type progress struct {
	rc    *http.ResponseController
	l     *Limits
	http1 bool

	mu        sync.Mutex
	body      bool      // the request has a body
	bodyDone  bool      // read to its end (or failed)
	readMark  time.Time // when the read deadline was last moved
	readSince int64     // body bytes since then
	writeEnd  time.Time // the write deadline set
	hijacked  bool
}

// beforeRead moves the read deadline when the body made progress.
func (p *progress) beforeRead() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !p.readMark.IsZero() && (p.readSince < p.l.BodyMinBytes || now.Sub(p.readMark) < p.l.BodyWindow/4) {
		return
	}
	p.readMark, p.readSince = now, 0
	_ = p.rc.SetReadDeadline(now.Add(p.l.BodyWindow))
}

// afterRead counts what arrived; at the end of the body the deadline is
// lifted, as the server then reads in the background for the client's
// disconnection while the handler runs.
func (p *progress) afterRead(n int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readSince += int64(n)
	if err != nil && !p.bodyDone {
		p.bodyDone = true
		if err == io.EOF {
			_ = p.rc.SetReadDeadline(time.Time{})
		}
	}
}

// beforeWrite moves the write deadline when less than half of the window
// is left.
func (p *progress) beforeWrite() {
	if p.l.WriteWindow <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hijacked {
		return
	}
	now := time.Now()
	if p.writeEnd.Sub(now) >= p.l.WriteWindow/2 {
		return
	}
	p.writeEnd = now.Add(p.l.WriteWindow)
	_ = p.rc.SetWriteDeadline(p.writeEnd)
}

// finish runs when the handler returns: the rest of an unread body must
// arrive within a window (HTTP/1 reads it to reuse the connection; HTTP/2
// drops it), and the server's last flush gets a fresh write deadline.
func (p *progress) finish() {
	p.mu.Lock()
	hijacked := p.hijacked
	if !hijacked && p.http1 && p.body && !p.bodyDone {
		p.bodyDone = true
		_ = p.rc.SetReadDeadline(time.Now().Add(p.l.BodyWindow))
	}
	p.mu.Unlock()
	if !hijacked {
		p.beforeWrite()
	}
}

func (p *progress) setHijacked() {
	p.mu.Lock()
	p.hijacked = true
	p.mu.Unlock()
}

// progressBody is a request body whose reads move the read deadline.
type progressBody struct {
	io.ReadCloser
	p *progress
}

func (b *progressBody) Read(buf []byte) (int, error) {
	b.p.beforeRead()
	n, err := b.ReadCloser.Read(buf)
	b.p.afterRead(n, err)
	return n, err
}

// progressWriter is a ResponseWriter whose writes move the write deadline.
// http.ResponseController reaches the rest (EnableFullDuplex, deadlines)
// through Unwrap.
type progressWriter struct {
	http.ResponseWriter
	p *progress
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.p.beforeWrite()
	return w.ResponseWriter.Write(b)
}

// WriteHeader writes at once for informational codes (103 Early Hints).
func (w *progressWriter) WriteHeader(code int) {
	w.p.beforeWrite()
	w.ResponseWriter.WriteHeader(code)
}

func (w *progressWriter) FlushError() error {
	w.p.beforeWrite()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *progressWriter) Flush() { _ = w.FlushError() }

// Hijack hands the connection over (WebSockets); the server clears its
// deadlines, and this request's deadlines are no longer moved.
func (w *progressWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.p.setHijacked()
	}
	return c, rw, err
}

func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// IsTimeout reports whether err is a deadline set by this package expiring.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
