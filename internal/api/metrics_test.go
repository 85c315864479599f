package api_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
)

// TestObservedLabelsAreBounded floods both handlers with made-up methods
// and paths: the values handed to the metrics stay within fixed sets, so a
// client without credentials cannot add series.
func TestObservedLabelsAreBounded(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	s := api.New(api.Config{Node: &fakeNode{}, Token: token,
		ObserveRequest: func(apiName, method, route string, code int, _ time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			seen[fmt.Sprintf("%s|%s|%s|%d", apiName, method, route, code)] = true
			if len(method) > len("OPTIONS") || len(route) > 64 {
				t.Errorf("unbounded label: method %.40q route %.40q", method, route)
			}
		}})
	r := rand.New(rand.NewPCG(1, 2))
	for _, h := range []http.Handler{s.LocalHandler(), s.ClusterHandler()} {
		for i := range 2000 {
			method := fmt.Sprintf("M%08d%s", i, strings.Repeat("X", r.IntN(60<<10)))
			path := []string{"/healthz", "/readyz", "/v1/status", "/v1/deploys/" + fmt.Sprint(i), fmt.Sprintf("/x%d", i),
				"/cluster/v1/mirror/" + fmt.Sprint(i)}[i%6]
			req := httptest.NewRequest(http.MethodGet, path, strings.NewReader("body"))
			req.Method = method
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	if len(seen) > 40 {
		t.Fatalf("%d distinct label sets after 4000 requests with made-up methods and paths", len(seen))
	}
	for _, m := range []string{"GET", "POST", "DELETE"} {
		if api.Method(m) != m {
			t.Errorf("Method(%s) = %s", m, api.Method(m))
		}
	}
	if api.Method("get") != api.MethodOther || api.Method("PROPFIND") != api.MethodOther {
		t.Error("non-standard methods must map to other")
	}
}
