package proxies_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/progtest"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// The forward-auth tests run the same cases against every proxy that asks
// tollgate's HTTP endpoint (nginx, Caddy): the proxy from Debian, started
// with the example from config/, in front of a `tollgate serve` built from
// this tree and a recording upstream.

const testIssuer = "https://auth.test"

// forwardAuthPolicy is the AuthPolicy the proxy tests serve: a tasks API
// where users touch only their own tasks (3 requests per user and hour),
// an anonymous health check, and reports that may only be read.
const forwardAuthPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: tasks-api
  namespace: shop
spec:
  pathPrefix: /api
  jwt:
    issuer: ` + testIssuer + `
    jwks: '{{JWKS}}'
    forwardClaims:
      x-user-id: sub
      x-user-email: email
  rules:
    - name: health
      methods: [GET]
      path: /api/health
      anonymous: true
    - name: reports
      methods: [GET]
      path: /api/reports
      anonymous: true
    - name: own-tasks
      methods: [GET, PUT, DELETE]
      path: /api/users/{userId}/tasks/**
      owner:
        claim: sub
        path: userId
      limits:
        - name: per-user
          requests: 3
          period: 1h
          by: user
`

// forwardAuthProxy is a proxy that asks tollgate's HTTP endpoint.
type forwardAuthProxy struct {
	bin, pkg string // the proxy's program and its Debian package
	mode     string // tollgate's --forward-auth for this proxy
	caps     proxyCaps
	// start runs the proxy's example in front of tollgate and the
	// upstream and returns its base URL.
	start func(t *testing.T, bin, tollgateHTTP, upstreamAddr string) string
}

// forwardAuthProxies are the examples run by TestForwardAuthProxies.
func forwardAuthProxies() map[string]forwardAuthProxy {
	return map[string]forwardAuthProxy{
		"nginx auth_request (config/nginx)": {
			bin: "nginx", pkg: "nginx", mode: "original", start: startNginx,
			caps: proxyCaps{allowRateLimitHeaders: true, unavailable: http.StatusServiceUnavailable},
		},
		// Caddy's forward_auth copies tollgate's headers onto the
		// upstream request only, so allowed responses carry no
		// X-RateLimit-*; an unreachable tollgate is its 502
		// (docs/proxies.md).
		"Caddy forward_auth (config/caddy)": {
			bin: "caddy", pkg: "caddy", mode: "forwarded", start: startCaddy,
			caps: proxyCaps{unavailable: http.StatusBadGateway},
		},
	}
}

// TestForwardAuthProxies runs each example in the real proxy (Debian's
// nginx 1.22 and Caddy 2.6.2) in front of `tollgate serve` in the
// --forward-auth mode the example names, with every case of
// runForwardAuthCases.
func TestForwardAuthProxies(t *testing.T) {
	for name, p := range forwardAuthProxies() {
		t.Run(name, func(t *testing.T) {
			bin := progtest.Need(t, p.bin, p.pkg)
			e := newForwardAuthEnv(t, p.mode, p.caps, func(t *testing.T, tollgateHTTP, upstreamAddr string) string {
				return p.start(t, bin, tollgateHTTP, upstreamAddr)
			})
			runForwardAuthCases(t, e)
		})
	}
}

// TestForwardAuthProxiesTollgateDown shows each example failing closed
// when tollgate cannot be reached: the proxy's error status, and nothing
// sent upstream, not even for an anonymous path.
func TestForwardAuthProxiesTollgateDown(t *testing.T) {
	for name, p := range forwardAuthProxies() {
		t.Run(name, func(t *testing.T) {
			bin := progtest.Need(t, p.bin, p.pkg)
			up := startUpstream(t)
			closed := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
			e := &forwardAuthEnv{base: p.start(t, bin, closed, up.Addr), upstream: up}
			r := e.send(t, t.Name(), "GET", "/api/health", nil)
			if r.status != p.caps.unavailable {
				t.Fatalf("status %d body %q, want %d", r.status, r.body, p.caps.unavailable)
			}
			if r.status == http.StatusServiceUnavailable {
				denyBody(t, r, "unavailable")
				if r.header.Get("Retry-After") == "" {
					t.Error("no Retry-After")
				}
			}
			e.notUpstream(t, t.Name())
		})
	}
}

// proxyCaps says what a proxy can pass on that the cases check.
type proxyCaps struct {
	// allowRateLimitHeaders: allowed responses carry X-RateLimit-*.
	allowRateLimitHeaders bool
	// unavailable is the status a client gets when tollgate is down.
	unavailable int
}

// forwardAuthEnv is one proxy under test.
type forwardAuthEnv struct {
	base     string // http://127.0.0.1:port of the proxy
	mode     string // tollgate's --forward-auth
	upstream *upstream
	key      *jwttest.Key
	caps     proxyCaps
}

// newForwardAuthEnv starts tollgate in mode with forwardAuthPolicy and the
// recording upstream, then the proxy, which start returns the address of.
func newForwardAuthEnv(t *testing.T, mode string, caps proxyCaps, start func(t *testing.T, tollgateHTTP, upstreamAddr string) string) *forwardAuthEnv {
	t.Helper()
	key := jwttest.NewEd25519(t)
	tg := startTollgate(t, mode, strings.Replace(forwardAuthPolicy, "{{JWKS}}", key.JWKS(), 1))
	up := startUpstream(t)
	return &forwardAuthEnv{base: start(t, tg.HTTPAddr, up.Addr), mode: mode, upstream: up, key: key, caps: caps}
}

// token mints a token for sub.
func (e *forwardAuthEnv) token(t *testing.T, sub string) string {
	t.Helper()
	c := jwttest.Claims(sub, testIssuer, "", time.Now(), time.Hour)
	c["email"] = sub + "@example.com"
	return e.key.Mint(t, c)
}

// response is what the client got.
type response struct {
	status int
	header http.Header
	body   []byte
}

// send sends one request through the proxy. target is written on the
// request line exactly as given (no cleaning, no escaping).
func (e *forwardAuthEnv) send(t *testing.T, caseID, method, target string, header map[string]string) response {
	t.Helper()
	u, err := url.Parse(e.base)
	if err != nil {
		t.Fatal(err)
	}
	u.Opaque = target // RequestURI() returns Opaque as is
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
	req.Host = "api.example.com"
	req.Header.Set(caseHeader, caseID)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// denyBody checks that r carries tollgate's JSON deny body with code.
func denyBody(t *testing.T, r response, code string) {
	t.Helper()
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error != code || body.Message == "" {
		t.Errorf("body %q (Content-Type %q): want tollgate's JSON with error %q", r.body, r.header.Get("Content-Type"), code)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
}

// notUpstream checks that no request of caseID reached the upstream.
func (e *forwardAuthEnv) notUpstream(t *testing.T, caseID string) {
	t.Helper()
	if got := e.upstream.requests(caseID); len(got) != 0 {
		t.Errorf("the upstream received %d request(s), first %s %s; want none", len(got), got[0].Method, got[0].URI)
	}
}

// runForwardAuthCases runs every case against the proxy in env.
func runForwardAuthCases(t *testing.T, e *forwardAuthEnv) {
	t.Run("allow: the upstream gets identity headers from the token, never the client's", func(t *testing.T) {
		id := t.Name()
		r := e.send(t, id, "GET", "/api/users/alice/tasks?done=false", map[string]string{
			"Authorization": "Bearer " + e.token(t, "alice"),
			"X-User-Id":     "mallory",
			"X-User-Email":  "mallory@example.com",
		})
		if r.status != http.StatusOK || string(r.body) != "upstream" {
			t.Fatalf("status %d body %q, want 200 from the upstream", r.status, r.body)
		}
		seen := e.upstream.requests(id)
		if len(seen) != 1 {
			t.Fatalf("the upstream received %d requests, want 1", len(seen))
		}
		s := seen[0]
		if got := s.Header.Values("X-User-Id"); len(got) != 1 || got[0] != "alice" {
			t.Errorf("upstream X-User-Id %q, want [alice]", got)
		}
		if got := s.Header.Values("X-User-Email"); len(got) != 1 || got[0] != "alice@example.com" {
			t.Errorf("upstream X-User-Email %q, want [alice@example.com]", got)
		}
		if s.Method != "GET" || s.URI != "/api/users/alice/tasks?done=false" {
			t.Errorf("upstream got %s %s, want the request tollgate authorized", s.Method, s.URI)
		}
		if e.caps.allowRateLimitHeaders {
			if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != "2" || r.header.Get("X-RateLimit-Reset") == "" {
				t.Errorf("X-RateLimit-* %q %q %q, want 3, 2 and a reset", r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"), r.header.Get("X-RateLimit-Reset"))
			}
			wantIETFRateLimit(t, r, 2)
		}
	})

	t.Run("anonymous allow: a client's identity headers are removed", func(t *testing.T) {
		id := t.Name()
		r := e.send(t, id, "GET", "/api/health", map[string]string{"X-User-Id": "admin", "X-User-Email": "root@example.com"})
		if r.status != http.StatusOK {
			t.Fatalf("status %d body %q, want 200", r.status, r.body)
		}
		seen := e.upstream.requests(id)
		if len(seen) != 1 {
			t.Fatalf("the upstream received %d requests, want 1", len(seen))
		}
		for _, h := range []string{"X-User-Id", "X-User-Email"} {
			if v := seen[0].Header.Values(h); len(v) != 0 {
				t.Errorf("upstream %s %q, want none", h, v)
			}
		}
	})

	t.Run("401 without a token, with tollgate's body and WWW-Authenticate", func(t *testing.T) {
		id := t.Name()
		r := e.send(t, id, "GET", "/api/users/alice/tasks", nil)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("status %d body %q, want 401", r.status, r.body)
		}
		denyBody(t, r, "unauthenticated")
		// The challenge's parameters are tollgate's (pkg/jwt tests them);
		// here it only has to reach the client.
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
			t.Errorf("WWW-Authenticate %q, want tollgate's Bearer challenge", got)
		}
		e.notUpstream(t, id)
	})

	t.Run("401 for a bad token names the class", func(t *testing.T) {
		id := t.Name()
		other := jwttest.NewEd25519(t)
		r := e.send(t, id, "GET", "/api/users/alice/tasks", map[string]string{
			"Authorization": "Bearer " + other.Mint(t, jwttest.Claims("alice", testIssuer, "", time.Now(), time.Hour)),
		})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("status %d body %q, want 401", r.status, r.body)
		}
		denyBody(t, r, "unauthenticated")
		if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", got)
		}
		e.notUpstream(t, id)
	})

	t.Run("403 for another user's tasks", func(t *testing.T) {
		id := t.Name()
		r := e.send(t, id, "DELETE", "/api/users/alice/tasks/1", map[string]string{"Authorization": "Bearer " + e.token(t, "bob")})
		if r.status != http.StatusForbidden {
			t.Fatalf("status %d body %q, want 403", r.status, r.body)
		}
		denyBody(t, r, "forbidden")
		e.notUpstream(t, id)
	})

	t.Run("429 past the quota, with Retry-After and X-RateLimit-*", func(t *testing.T) {
		id := t.Name()
		tok := "Bearer " + e.token(t, "carol")
		for i := range 3 {
			if r := e.send(t, id, "GET", "/api/users/carol/tasks", map[string]string{"Authorization": tok}); r.status != http.StatusOK {
				t.Fatalf("request %d: status %d body %q, want 200", i+1, r.status, r.body)
			}
		}
		r := e.send(t, id, "GET", "/api/users/carol/tasks", map[string]string{"Authorization": tok})
		if r.status != http.StatusTooManyRequests {
			t.Fatalf("request 4: status %d body %q, want 429", r.status, r.body)
		}
		denyBody(t, r, "rate_limited")
		if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("Retry-After %q, want seconds to wait", ra)
		}
		if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("X-RateLimit-Reset") == "" {
			t.Errorf("X-RateLimit-* %q %q %q, want 3, 0 and a reset", r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"), r.header.Get("X-RateLimit-Reset"))
		}
		wantIETFRateLimit(t, r, 0)
		if n := len(e.upstream.requests(id)); n != 3 {
			t.Errorf("the upstream received %d requests, want the 3 allowed", n)
		}
	})

	// Issue 9 §1: a client's forwarding headers must not describe the
	// request tollgate authorizes. The proxy overwrites the headers of its
	// own convention, so tollgate decides the real request (no token:
	// 401); it answers 400 when the other convention's headers contradict
	// the proxy's.
	for _, spoof := range []struct {
		name   string
		mode   string // the --forward-auth mode whose headers these are
		header map[string]string
	}{
		{"X-Forwarded-*", "forwarded", map[string]string{"X-Forwarded-Uri": "/api/health", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com"}},
		{"X-Original-*", "original", map[string]string{"X-Original-URI": "/api/health", "X-Original-Method": "GET", "X-Original-Host": "api.example.com"}},
	} {
		want := http.StatusBadRequest
		if spoof.mode == e.mode {
			want = http.StatusUnauthorized
		}
		t.Run(fmt.Sprintf("a client's %s headers do not authorize its DELETE", spoof.name), func(t *testing.T) {
			id := t.Name()
			r := e.send(t, id, "DELETE", "/api/users/bob/tasks", spoof.header)
			if r.status != want {
				t.Fatalf("status %d body %q, want %d", r.status, r.body, want)
			}
			e.notUpstream(t, id)
		})
	}

	t.Run("the method is the client's, not the subrequest's", func(t *testing.T) {
		id := t.Name()
		if r := e.send(t, id+"/GET", "GET", "/api/reports", nil); r.status != http.StatusOK {
			t.Fatalf("GET: status %d body %q, want 200", r.status, r.body)
		}
		r := e.send(t, id, "DELETE", "/api/reports", nil)
		if r.status != http.StatusForbidden {
			t.Fatalf("DELETE: status %d body %q, want 403 (the rule allows GET only)", r.status, r.body)
		}
		denyBody(t, r, "forbidden")
		e.notUpstream(t, id)
	})

	// Issue 9 §4: the proxy passes method-override headers and _method to
	// the upstream, so they must reach tollgate too.
	for name, req := range map[string]struct {
		target string
		header map[string]string
	}{
		"X-HTTP-Method-Override": {"/api/reports", map[string]string{"X-HTTP-Method-Override": "DELETE"}},
		"X-Method-Override":      {"/api/reports", map[string]string{"X-Method-Override": "DELETE"}},
		"_method":                {"/api/reports?_method=DELETE", nil},
	} {
		t.Run("a GET overridden to DELETE by "+name+" is denied", func(t *testing.T) {
			id := t.Name()
			r := e.send(t, id, "GET", req.target, req.header)
			if r.status != http.StatusForbidden {
				t.Fatalf("status %d body %q, want 403 (the rule allows GET only)", r.status, r.body)
			}
			denyBody(t, r, "forbidden")
			e.notUpstream(t, id)
		})
	}

	for _, target := range []string{
		"/api/users/bob/tasks/../../alice/tasks",
		"/api/users/bob/tasks/%2e%2e/%2E%2E/alice/tasks",
		"/api/users/bob/tasks///../../alice/tasks",
		"/api/users/%61lice/tasks",
	} {
		t.Run("a path not in normal form is denied: "+target, func(t *testing.T) {
			id := t.Name()
			r := e.send(t, id, "GET", target, map[string]string{"Authorization": "Bearer " + e.token(t, "bob")})
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d body %q, want 400", r.status, r.body)
			}
			denyBody(t, r, "bad_request")
			e.notUpstream(t, id)
		})
	}
}

// wantIETFRateLimit checks the RateLimit-Policy and RateLimit headers of
// the per-user limit (3 per hour) with r requests left.
func wantIETFRateLimit(t *testing.T, r response, left int) {
	t.Helper()
	if got, want := r.header.Get("RateLimit-Policy"), `"per-user";q=3;w=3600`; got != want {
		t.Errorf("RateLimit-Policy %q, want %q", got, want)
	}
	if got, want := r.header.Get("RateLimit"), fmt.Sprintf(`"per-user";r=%d;t=`, left); !strings.HasPrefix(got, want) {
		t.Errorf("RateLimit %q, want it to start with %q", got, want)
	}
}
