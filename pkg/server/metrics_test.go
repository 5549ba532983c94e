package server_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/version"
)

// scrapeHarness is a server with a metric in every state worth showing:
// Redis as the quota store, a remote JWKS that answers and one that fails,
// a ready, an invalid, a conflicting and a dryRun policy, and decisions
// that allow, deny and rate-limit.
type scrapeHarness struct {
	*harness
	t                   *testing.T
	jwksURL, badJWKSURL string
}

func startScrapeHarness(t *testing.T) *scrapeHarness {
	t.Helper()
	key := jwttest.NewEd25519(t)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(key.JWKS())) }))
	t.Cleanup(jwks.Close)
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }))
	t.Cleanup(bad.Close)
	redis := redistest.StartServer(t)
	remote := func(name, uri string) string {
		return strings.Replace(policyYAML(name, "unused", 1), "    jwks: 'unused'", "    jwksURI: "+uri, 1)
	}
	h := startWithKey(t, key, map[string]string{
		"a-tasks.yaml": remote("tasks-api", jwks.URL),
		// Newer, on the same host and prefix: a conflict.
		"b-copy.yaml": remote("tasks-copy", jwks.URL),
		// Another prefix, keys from an endpoint that fails.
		"c-other.yaml": `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: other-api
  namespace: shop
spec:
  hosts: ["api.example.com"]
  pathPrefix: /other
  jwt:
    issuer: ` + issuer + `
    jwksURI: ` + bad.URL + `
  rules:
    - name: everything
`,
		"d-invalid.yaml": strings.Replace(policyYAML("broken", "$JWKS", 1), "pathPrefix: /api", "pathPrefix: broken", 1),
		// Evaluated beside tasks-api; it would deny everything but bob's.
		"e-shadow.yaml": `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: shadow, namespace: shop}
spec:
  hosts: ["api.example.com"]
  pathPrefix: /api/users
  mode: dryRun
  rules:
    - {name: bob, path: /api/users/bob/**, anonymous: true}
`,
	}, withRedis(redis.Addr, nil, "local"))
	token := h.token("alice", nil)
	for _, path := range []string{"/api/users/alice/tasks", "/api/users/alice/tasks", "/api/users/bob/tasks"} {
		h.check(checkRequest(path, token, nil, nil)) // allow, 429, 403
	}
	return &scrapeHarness{harness: h, t: t, jwksURL: jwks.URL, badJWKSURL: bad.URL}
}

// scrape returns /metrics once every want line is there.
func (h *scrapeHarness) scrape(want ...string) string {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, metrics := get(h.t, h.srv.Addr("metrics"), "/metrics")
		missing := slices.DeleteFunc(slices.Clone(want), func(w string) bool { return strings.Contains(metrics, w) })
		if len(missing) == 0 {
			return metrics
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("/metrics lacks %q:\n%s", missing, metrics)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMetricsScrape: the metrics of issue 11 in a real scrape.
func TestMetricsScrape(t *testing.T) {
	h := startScrapeHarness(t)
	b := version.Get()
	metrics := h.scrape(
		`tollgate_build_info{commit="`+b.Commit+`",goversion="`+runtime.Version()+`",version="`+b.Version+`"} 1`,
		`tollgate_ratelimit_denials_total{limit="per-user",policy="shop/tasks-api"} 1`,
		`tollgate_policies{state="ready"} 2`,
		`tollgate_policies{state="invalid"} 1`,
		`tollgate_policies{state="conflict"} 1`,
		`tollgate_policies{state="unavailable"} 1`,
		`tollgate_jwks_keys{uri="`+h.jwksURL+`"} 1`,
		`tollgate_jwks_keys{uri="`+h.badJWKSURL+`"} 0`,
		`tollgate_jwks_age_seconds{uri="`+h.jwksURL+`"} `,
		`tollgate_quota_store_up 1`,
	)
	if strings.Contains(metrics, `tollgate_jwks_age_seconds{uri="`+h.badJWKSURL+`"}`) {
		t.Error("an age for a key set never fetched")
	}
	// The age grows between scrapes without any fetch (the next is due
	// in minutes).
	age := func(m string) float64 {
		_, rest, _ := strings.Cut(m, `tollgate_jwks_age_seconds{uri="`+h.jwksURL+`"} `)
		v, _, _ := strings.Cut(rest, "\n")
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("JWKS age %q: %v", v, err)
		}
		return f
	}
	first := age(metrics)
	h.waitFor("the JWKS age to grow", func() bool { return age(h.scrape()) > first })
}

// TestDeletedPolicyLeavesNoSeries: in a real scrape, a deleted policy's
// series (decisions, rate-limit denials) are gone while another policy's
// stay and keep counting, and the policy, created again, counts from 0.
func TestDeletedPolicyLeavesNoSeries(t *testing.T) {
	h := &scrapeHarness{t: t, harness: start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1), "public.yaml": otherPolicy})}
	const (
		tasksAllowed = `tollgate_decisions_total{mode="enforce",policy="shop/tasks-api",reason="allowed",result="allow",rule="own-tasks"} `
		tasksDenied  = `tollgate_ratelimit_denials_total{limit="per-user",policy="shop/tasks-api"} `
		publicSeries = `tollgate_decisions_total{mode="enforce",policy="shop/public",reason="allowed",result="allow",rule="everything"} `
	)
	// tasks checks sub's tasks: tasks-api allows the first with
	// x-user-id and denies the next 429; shop/public, under it, allows
	// every one without.
	tasks := func(sub string) outcome {
		return grpcOutcome(h.check(checkRequest("/api/users/"+sub+"/tasks", h.token(sub, nil), nil, nil)))
	}
	servedByTasks := func(sub string) bool { o := tasks(sub); return o.status != 200 || o.headers["x-user-id"] == sub }
	if !servedByTasks("alice") {
		t.Fatal("tasks-api does not serve alice's tasks")
	}
	h.check(checkRequest("/api/users/alice/tasks", h.token("alice", nil), nil, nil)) // 429
	h.check(checkRequest("/public", "", nil, nil))
	before := h.scrape(tasksAllowed+"1\n", tasksDenied+"1\n", publicSeries+"1\n")
	if !strings.Contains(before, `policy="shop/tasks-api",reason="rate_limited"`) {
		t.Fatalf("no rate_limited decisions of tasks-api:\n%s", before)
	}

	if err := os.Remove(filepath.Join(h.dir, "tasks.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("tasks-api to be deleted", func() bool { return !servedByTasks("bob") })
	after := h.scrape(`tollgate_policies_loaded 1`)
	if strings.Contains(after, `policy="shop/tasks-api"`) {
		t.Errorf("series of the deleted policy remain:\n%s", grepLines(after, `policy="shop/tasks-api"`))
	}
	if n := counterValue(t, after, publicSeries); n < 2 {
		t.Errorf("shop/public's series after the delete: %v, want it kept and counting (> 1)", n)
	}

	h.write("tasks.yaml", policyYAML("tasks-api", h.key.JWKS(), 1))
	h.waitFor("tasks-api to be served again", func() bool { return servedByTasks("carol") })
	again := h.scrape(tasksAllowed + "1\n")
	if strings.Contains(again, tasksDenied) {
		t.Errorf("the re-created policy has a denial it never made: %s", grepLines(again, tasksDenied))
	}
}

// counterValue returns the value of the series that line starts with
// (name and labels, and a space), failing when there is none.
func counterValue(t *testing.T, metrics, series string) float64 {
	t.Helper()
	_, rest, ok := strings.Cut(metrics, series)
	if !ok {
		t.Fatalf("no series %s", series)
	}
	v, _, _ := strings.Cut(rest, "\n")
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	return f
}
