package edge

import (
	"fmt"
	"net/http"
	"strconv"
)

// writePage answers with an HTML page that no cache keeps.
func writePage(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// pageStyle is shared by the built-in pages.
const pageStyle = `<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222;line-height:1.5}h1{font-size:1.5em}</style>`

func simplePage(title, text string) []byte {
	return fmt.Appendf(nil, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>%s</head>
<body><h1>%s</h1><p>%s</p></body></html>
`, title, pageStyle, title, text)
}

var (
	badGatewayPage     = simplePage("502 Bad Gateway", "The site is temporarily unavailable: the web server on this node did not answer. Please try again in a moment.")
	gatewayTimeoutPage = simplePage("504 Gateway Timeout", "The site took too long to answer. Please try again in a moment.")
)

func errorPage(status int) []byte {
	if status == http.StatusGatewayTimeout {
		return gatewayTimeoutPage
	}
	return badGatewayPage
}

// builtinMaintenancePage is served during maintenance unless
// edge.maintenance_page names a file; {{message}} is replaced.
const builtinMaintenancePage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Maintenance</title>` + pageStyle + `</head>
<body><h1>This site is under maintenance</h1><p>{{message}}</p><p>Please try again shortly.</p></body></html>
`
