// Package ui is the operators' status page served at /ui/ by every agent:
// plain HTML, CSS and JavaScript modules embedded in the binary, nothing
// fetched at run time. The page reads only the public REST API (the same
// calls curl and the CLI make) and acts only with the admin token in an
// Authorization header, never a cookie. This package owns the files and
// the headers they are served with (a strict Content-Security-Policy, no
// framing); the routes, the session and the API live in internal/api.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed assets
var assets embed.FS

// ContentSecurityPolicy allows only this origin's own scripts and styles:
// no inline script or style, no framing by any site, no form posts, fetch
// only to this origin, and Trusted Types so no string ever becomes HTML.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// SetHeaders sets the security headers of every page response.
func SetHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
}

// types are the content types of the page's files (not the system's
// table, which varies between machines).
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

type file struct {
	data  []byte
	ctype string
	etag  string
}

// Handler serves the page's files by their path below /ui ("/" is
// index.html). Files are revalidated by ETag, so an upgraded agent's page
// is loaded at once.
func Handler() http.Handler {
	files := embedded()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "index.html"
		}
		f, ok := files[name]
		SetHeaders(w.Header())
		if !ok {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", f.ctype)
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", f.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.data))
	})
}

// embedded reads the files once.
var embedded = sync.OnceValue(load)

func load() map[string]file {
	files := map[string]file{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype, ok := types[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no content type for its extension", p)
		}
		files[strings.TrimPrefix(p, "assets/")] = file{data: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		panic("ui: embedded assets: " + err.Error()) // cannot happen: embed.FS is in memory
	}
	return files
}
