package api_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Routes left out of the OpenAPI document on purpose, or served by one API
// only. The test checks these lists against the registered routes too.
var (
	// Agent-to-agent endpoints: internal, cluster API only.
	undocumented = []string{"/cluster/v1/mirror/*", "/cluster/v1/meta", "/cluster/v1/report", "/cluster/v1/keyring"}
	// The status page's files: HTML, CSS and JavaScript, not API.
	pages = []string{"/ui", "/ui/*"}
	// Documented, but served by the local API only.
	localOnly = []string{"GET /metrics"}
)

// registered returns "METHOD /path" of every route of a handler, with
// echo's :param written as OpenAPI's {param}, leaving out echo's not-found
// catch-alls and the undocumented prefixes.
func registered(t *testing.T, h http.Handler) (routes, skipped map[string]bool) {
	t.Helper()
	e, ok := h.(*echo.Echo)
	if !ok {
		t.Fatalf("handler is a %T, not *echo.Echo", h)
	}
	param := regexp.MustCompile(`:([a-zA-Z_]+)`)
	routes, skipped = map[string]bool{}, map[string]bool{}
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		if slices.Contains(undocumented, r.Path) || slices.Contains(pages, r.Path) {
			skipped[r.Path] = true
			continue
		}
		routes[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	return routes, skipped
}

type openAPIDoc struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas   map[string]json.RawMessage `json:"schemas"`
		Responses map[string]json.RawMessage `json:"responses"`
	} `json:"components"`
}

func documented(t *testing.T, doc openAPIDoc) map[string]bool {
	t.Helper()
	ops := map[string]bool{}
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				ops[strings.ToUpper(method)+" "+path] = true
			case "parameters", "summary", "description":
			default:
				t.Errorf("%s: unknown key %q in a path item", path, method)
			}
		}
	}
	return ops
}

// diff reports every route missing from the document and every documented
// route that does not exist.
func diff(t *testing.T, api string, doc, routes map[string]bool) {
	t.Helper()
	for r := range routes {
		if !doc[r] {
			t.Errorf("%s API: route %s is registered but not in openapi.json", api, r)
		}
	}
	for r := range doc {
		if !routes[r] {
			t.Errorf("%s API: openapi.json documents %s, which is not registered", api, r)
		}
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	ops := documented(t, doc)
	srv := api.New(api.Config{Node: &fakeNode{}, Token: token, Mirror: http.NotFoundHandler(), Metrics: http.NotFoundHandler(),
		Meta: func() gossip.NodeMeta { return gossip.NodeMeta{} }, View: &fakeView{}})

	local, skipped := registered(t, srv.LocalHandler())
	for p := range skipped {
		if !slices.Contains(pages, p) {
			t.Errorf("local API serves agent-to-agent route %s", p)
		}
	}
	diff(t, "local", ops, local)

	cluster, skipped := registered(t, srv.ClusterHandler())
	for _, p := range undocumented {
		if !skipped[p] {
			t.Errorf("cluster API: undocumented route %s is not registered: drop it from the list", p)
		}
	}
	for _, r := range localOnly {
		if !local[r] || cluster[r] {
			t.Errorf("%s: want it on the local API only (local %v, cluster %v)", r, local[r], cluster[r])
		}
		delete(ops, r)
	}
	diff(t, "cluster", ops, cluster)
}

// TestOpenAPIRefsResolve: every $ref names a component that exists.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`"\$ref":\s*"#/components/(schemas|responses)/([^"]+)"`).FindAllStringSubmatch(string(api.OpenAPI), -1)
	if len(refs) == 0 {
		t.Fatal("no $ref found")
	}
	for _, m := range refs {
		kind := doc.Components.Schemas
		if m[1] == "responses" {
			kind = doc.Components.Responses
		}
		if _, ok := kind[m[2]]; !ok {
			t.Errorf("$ref to missing component %s/%s", m[1], m[2])
		}
	}
}

func TestOpenAPIServedWithToken(t *testing.T) {
	srv := serve(t, &fakeNode{})
	if resp, _ := do(t, "GET", srv.URL+"/v1/openapi.json", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %d, want 401", resp.StatusCode)
	}
	resp, body := do(t, "GET", srv.URL+"/v1/openapi.json", token, "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /v1/openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var v struct{ OpenAPI string }
	if err := json.Unmarshal(body, &v); err != nil || !strings.HasPrefix(v.OpenAPI, "3.") {
		t.Fatalf("served document: openapi %q, err %v", v.OpenAPI, err)
	}
}
