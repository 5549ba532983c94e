package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tollgate-dev/tollgate/internal/testlog"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

const issuer = "https://auth.example.com"

// policyYAML is the tasks scenario with an inline JWKS and small limits.
func policyYAML(name, jwks string, perUser int) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: %s
  namespace: shop
spec:
  hosts: ["api.example.com"]
  pathPrefix: /api
  jwt:
    issuer: %s
    jwks: '%s'
    forwardClaims:
      x-user-id: sub
  rules:
    - name: health
      path: /api/health
      anonymous: true
    - name: own-tasks
      path: /api/users/{userId}/tasks/**
      owner:
        path: userId
        allowIf: {claim: role, values: [admin]}
      limits:
        - name: per-user
          requests: %d
          period: 1h
          by: user
`, name, issuer, jwks, perUser)
}

const otherPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: public
  namespace: shop
spec:
  rules:
    - name: everything
      anonymous: true
`

type harness struct {
	t       testing.TB
	dir     string
	key     *jwttest.Key
	srv     *server.Server
	cancel  context.CancelFunc
	done    chan error
	auth    authv3.AuthorizationClient
	conn    *grpc.ClientConn
	logs    *syncBuffer
	httpURL string
}

// syncBuffer collects logs from the server's goroutines.
type syncBuffer = testlog.Buffer

func start(t testing.TB, files map[string]string, mutate ...func(*server.Options)) *harness {
	t.Helper()
	return startWithKey(t, jwttest.NewEd25519(t), files, mutate...)
}

// startWithKey is start with the signing key of $JWKS given, so that
// several servers accept the same tokens.
func startWithKey(t testing.TB, key *jwttest.Key, files map[string]string, mutate ...func(*server.Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), key: key, logs: &syncBuffer{}}
	for name, content := range files {
		h.write(name, strings.ReplaceAll(content, "$JWKS", h.key.JWKS()))
	}
	opts := server.Options{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0",
		PolicyPaths:    []string{h.dir},
		ReloadInterval: 50 * time.Millisecond,
		TokenCacheSize: 1000,
		Logger:         mustLogger(t, h.logs, slog.LevelInfo),
	}
	for _, m := range mutate {
		m(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	h.waitFor("server ready", srv.Ready)
	conn, err := grpc.NewClient(srv.Addr("grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.conn, h.auth = conn, authv3.NewAuthorizationClient(conn)
	h.httpURL = "http://" + srv.Addr("http")
	return h
}

func (h *harness) write(name, content string) {
	h.t.Helper()
	tmp := filepath.Join(h.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, name)); err != nil {
		h.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) token(sub string, extra map[string]any) string {
	c := jwttest.Claims(sub, issuer, "", time.Now(), time.Hour)
	for k, v := range extra {
		c[k] = v
	}
	return h.key.Mint(h.t, c)
}

func checkRequest(path, token string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	hs := map[string]string{":authority": "api.example.com", ":method": "GET", ":path": path}
	if token != "" {
		hs["authorization"] = "Bearer " + token
	}
	for k, v := range headers {
		hs[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: path, Headers: hs,
		}},
		ContextExtensions: ext,
	}}
}

func (h *harness) check(req *authv3.CheckRequest) *authv3.CheckResponse {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.auth.Check(ctx, req)
	if err != nil {
		h.t.Fatalf("Check: %v", err)
	}
	return resp
}

// outcome is what Envoy would do with a CheckResponse, or what nginx would
// do with a forward-auth response: the status, and the headers set for the
// upstream (allow) or the client (deny).
type outcome struct {
	status   int
	rpc      codes.Code
	headers  map[string]string
	removed  []string
	body     string
	clientRL map[string]string
}

func grpcOutcome(resp *authv3.CheckResponse) outcome {
	o := outcome{rpc: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}, clientRL: map[string]string{}}
	if ok := resp.GetOkResponse(); ok != nil || o.rpc == codes.OK {
		o.status = 200
		for _, hv := range ok.GetHeaders() {
			if hv.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				o.headers["!append:"+hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
			}
			o.headers[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		for _, hv := range ok.GetResponseHeadersToAdd() {
			o.clientRL[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
		}
		o.removed = ok.GetHeadersToRemove()
		return o
	}
	d := resp.GetDeniedResponse()
	o.status = int(d.GetStatus().GetCode())
	for _, hv := range d.GetHeaders() {
		o.headers[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	o.body = d.GetBody()
	return o
}

func (h *harness) httpOutcome(path, token string, headers map[string]string) outcome {
	h.t.Helper()
	req, err := http.NewRequest("GET", h.httpURL+"/", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Host", "api.example.com")
	req.Header.Set("X-Forwarded-Uri", path)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := outcome{status: resp.StatusCode, headers: map[string]string{}, body: string(body)}
	for k := range resp.Header {
		o.headers[strings.ToLower(k)] = resp.Header.Get(k)
	}
	if rm := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); rm != "" {
		o.removed = strings.Split(rm, ",")
	}
	return o
}

// keysDownPolicy serves /keys from a JWKS that refuses connections.
const keysDownPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: keys-down
  namespace: shop
spec:
  hosts: ["api.example.com"]
  pathPrefix: /keys
  jwt:
    issuer: ` + issuer + `
    jwksURI: http://127.0.0.1:1/jwks
  rules:
    - name: any
`

func TestDecisionsOverGRPCAndHTTP(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 2), "public.yaml": otherPolicy, "keys.yaml": keysDownPolicy})
	alice := h.token("alice", nil)
	expired := h.key.Mint(t, jwttest.Claims("alice", issuer, "", time.Now().Add(-2*time.Hour), time.Hour))
	tests := []struct {
		name    string
		path    string
		token   string
		headers map[string]string
		status  int
		rpc     codes.Code
		check   func(t *testing.T, o outcome)
	}{
		{name: "alice reads her tasks, upstream sees alice only", path: "/api/users/alice/tasks", token: alice,
			headers: map[string]string{"x-user-id": "bob"}, status: 200, rpc: codes.OK,
			check: func(t *testing.T, o outcome) {
				if o.headers["x-user-id"] != "alice" {
					t.Errorf("x-user-id = %q, want alice (headers %v)", o.headers["x-user-id"], o.headers)
				}
				if _, appended := o.headers["!append:x-user-id"]; appended {
					t.Error("x-user-id is appended, not overwritten")
				}
			}},
		{name: "an encoded slash is 400", path: "/api/users/alice%2ftasks", token: alice, status: 400, rpc: codes.InvalidArgument,
			check: func(t *testing.T, o outcome) { wantBody(t, o, "bad_request") }},
		{name: "no token is 401 with a bare challenge", path: "/api/users/alice/tasks", status: 401, rpc: codes.Unauthenticated,
			check: func(t *testing.T, o outcome) {
				wantBody(t, o, "unauthenticated")
				if o.headers["www-authenticate"] != `Bearer realm="tollgate"` {
					t.Errorf("www-authenticate = %q", o.headers["www-authenticate"])
				}
			}},
		{name: "an expired token is 401 naming the class", path: "/api/users/alice/tasks", token: expired, status: 401, rpc: codes.Unauthenticated,
			check: func(t *testing.T, o outcome) {
				wantBody(t, o, "unauthenticated")
				if want := `Bearer realm="tollgate", error="invalid_token", error_description="token expired"`; o.headers["www-authenticate"] != want {
					t.Errorf("www-authenticate = %q, want %q", o.headers["www-authenticate"], want)
				}
			}},
		{name: "keys that cannot be had are 503 with Retry-After", path: "/keys/x", token: alice, status: 503, rpc: codes.Unavailable,
			check: func(t *testing.T, o outcome) {
				wantBody(t, o, "unavailable")
				if o.headers["retry-after"] == "" || o.headers["www-authenticate"] != "" {
					t.Errorf("retry-after = %q, www-authenticate = %q", o.headers["retry-after"], o.headers["www-authenticate"])
				}
			}},
		{name: "a forged token is 401 and not echoed", path: "/api/users/alice/tasks", token: alice[:len(alice)-4] + "AAAA", status: 401, rpc: codes.Unauthenticated,
			check: func(t *testing.T, o outcome) {
				if strings.Contains(o.body, alice[:20]) {
					t.Error("body echoes the token")
				}
			}},
		{name: "bob's tasks are 403 for alice", path: "/api/users/bob/tasks", token: alice, status: 403, rpc: codes.PermissionDenied,
			check: func(t *testing.T, o outcome) { wantBody(t, o, "forbidden") }},
		{name: "a path without a rule is 403", path: "/api/admin", token: alice, status: 403, rpc: codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run("grpc/"+tc.name, func(t *testing.T) {
			o := grpcOutcome(h.check(checkRequest(tc.path, tc.token, tc.headers, nil)))
			if o.status != tc.status || o.rpc != tc.rpc {
				t.Fatalf("status %d rpc %v, want %d %v (%+v)", o.status, o.rpc, tc.status, tc.rpc, o)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
		t.Run("http/"+tc.name, func(t *testing.T) {
			o := h.httpOutcome(tc.path, tc.token, tc.headers)
			if o.status != tc.status {
				t.Fatalf("status %d, want %d (%+v)", o.status, tc.status, o)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
	if logs := h.logs.String(); strings.Contains(logs, alice[strings.LastIndexByte(alice, '.')+1:]) || strings.Contains(logs, alice[:30]) {
		t.Error("logs contain the token")
	}
}

// TestJWKSAllowedHosts: --jwks-allowed-hosts reaches the key fetches; a
// key URL outside it is never fetched, its tokens get 503, and the log says
// why.
func TestJWKSAllowedHosts(t *testing.T) {
	var hits atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer jwks.Close()
	h := start(t, map[string]string{"keys.yaml": strings.Replace(keysDownPolicy, "http://127.0.0.1:1/jwks", jwks.URL, 1)},
		func(o *server.Options) { o.JWKSAllowedHosts = []string{"*.example.com"} })
	o := grpcOutcome(h.check(checkRequest("/keys/x", h.token("alice", nil), nil, nil)))
	if o.status != 503 || o.rpc != codes.Unavailable {
		t.Fatalf("status %d rpc %v, want 503 Unavailable", o.status, o.rpc)
	}
	h.waitFor("the refusal to be logged", func() bool { return strings.Contains(h.logs.String(), "not allowed by --jwks-allowed-hosts") })
	if hits.Load() != 0 {
		t.Fatal("a JWKS outside --jwks-allowed-hosts was fetched")
	}
}

// TestUnknownKidWithJWKSDownIs503: SPEC "Keys that cannot be had (no key
// set ever fetched, or the JWKS is down and the kid is unknown) are a
// server-side outage: 503 with Retry-After, reason keys_unavailable, error
// code unavailable" — also right after the key set was fetched, when the
// refresh for an unknown kid is the first since. Known keys keep working.
func TestUnknownKidWithJWKSDownIs503(t *testing.T) {
	key := jwttest.NewEd25519(t)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, key.JWKS())
	}))
	h := startWithKey(t, key, map[string]string{"keys.yaml": strings.Replace(keysDownPolicy, "http://127.0.0.1:1/jwks", jwks.URL, 1)})
	if o := grpcOutcome(h.check(checkRequest("/keys/x", h.token("alice", nil), nil, nil))); o.status != 200 {
		t.Fatalf("before the outage: %+v", o)
	}
	jwks.Close()
	unknown := jwttest.NewEd25519(t).Mint(t, jwttest.Claims("alice", issuer, "", time.Now(), time.Hour))
	for _, what := range []string{"first unknown kid", "unknown kid, refresh throttled"} {
		o := grpcOutcome(h.check(checkRequest("/keys/x", unknown, nil, nil)))
		if o.status != 503 || o.rpc != codes.Unavailable || o.headers["retry-after"] == "" || o.headers["www-authenticate"] != "" {
			t.Fatalf("%s with the JWKS down: %+v, want 503 with Retry-After and no challenge", what, o)
		}
		wantBody(t, o, "unavailable")
	}
	if o := grpcOutcome(h.check(checkRequest("/keys/x", h.token("bob", nil), nil, nil))); o.status != 200 {
		t.Fatalf("a known key during the outage: %+v", o)
	}
}

func wantBody(t *testing.T, o outcome, code string) {
	t.Helper()
	var body struct{ Error, Message string }
	if err := json.Unmarshal([]byte(o.body), &body); err != nil || body.Error != code || body.Message == "" {
		t.Errorf("body %q (%v), want error %q and a message", o.body, err, code)
	}
	if ct := o.headers["content-type"]; ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
}

func TestRateLimitOverGRPCAndHTTP(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 3)})
	alice := h.token("alice", nil)
	// gRPC and HTTP share the engine and its counters: 3 allowed in all,
	// one every 20 minutes.
	first := grpcOutcome(h.check(checkRequest("/api/users/alice/tasks", alice, nil, nil)))
	if first.status != 200 || first.clientRL["x-ratelimit-limit"] != "3" || first.clientRL["x-ratelimit-remaining"] != "2" {
		t.Fatalf("first: %+v", first)
	}
	wantRateLimit(t, "grpc allow", first.clientRL, 2, 1200)
	second := h.httpOutcome("/api/users/alice/tasks", alice, nil)
	if second.status != 200 || second.headers["x-ratelimit-remaining"] != "1" {
		t.Fatalf("second: %+v", second)
	}
	wantRateLimit(t, "http allow", second.headers, 1, 2400)
	if o := grpcOutcome(h.check(checkRequest("/api/users/alice/tasks", alice, nil, nil))); o.status != 200 {
		t.Fatalf("third: %+v", o)
	}
	g := grpcOutcome(h.check(checkRequest("/api/users/alice/tasks", alice, nil, nil)))
	if g.status != 429 || g.rpc != codes.ResourceExhausted || g.headers["retry-after"] == "" || g.headers["x-ratelimit-remaining"] != "0" {
		t.Fatalf("grpc 4th: %+v", g)
	}
	wantBody(t, g, "rate_limited")
	wantRateLimit(t, "grpc 429", g.headers, 0, 3600)
	wantLimitMessage(t, g)
	o := h.httpOutcome("/api/users/alice/tasks", alice, nil)
	if o.status != 429 || o.headers["retry-after"] == "" || o.headers["x-ratelimit-limit"] != "3" {
		t.Fatalf("http 5th: %+v", o)
	}
	wantRateLimit(t, "http 429", o.headers, 0, 3600)
	wantLimitMessage(t, o)
}

// wantRateLimit checks the IETF rate-limit headers of policyYAML's
// per-user limit (3 per hour): r requests left, full again in t seconds,
// give or take the test's own duration.
func wantRateLimit(t *testing.T, what string, headers map[string]string, r, full int) {
	t.Helper()
	if got, want := headers["ratelimit-policy"], `"per-user";q=3;w=3600`; got != want {
		t.Errorf("%s: RateLimit-Policy %q, want %q", what, got, want)
	}
	var gotR, gotT int
	if _, err := fmt.Sscanf(headers["ratelimit"], `"per-user";r=%d;t=%d`, &gotR, &gotT); err != nil || gotR != r || gotT > full || gotT < full-10 {
		t.Errorf("%s: RateLimit %q, want \"per-user\";r=%d;t=%d (%v)", what, headers["ratelimit"], r, full, err)
	}
}

// wantLimitMessage checks that a 429's message names the limit, its rate
// and when the next request is allowed.
func wantLimitMessage(t *testing.T, o outcome) {
	t.Helper()
	var body struct{ Error, Message string }
	if err := json.Unmarshal([]byte(o.body), &body); err != nil {
		t.Fatalf("body %q: %v", o.body, err)
	}
	if want := `rate limit "per-user" exceeded: 3 requests per 1h, burst 3; next request allowed in `; !strings.HasPrefix(body.Message, want) ||
		!slices.Contains([]string{"20m", "19m59s", "19m58s"}, strings.TrimPrefix(body.Message, want)) {
		t.Errorf("message %q, want %q and about 20m", body.Message, want)
	}
}

func TestContextExtensionsSelectPolicy(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 3), "public.yaml": otherPolicy})
	// By host and prefix, tasks-api governs and denies the anonymous call...
	if o := grpcOutcome(h.check(checkRequest("/api/users/bob/tasks", "", nil, nil))); o.status != 401 {
		t.Fatalf("without extension: %+v", o)
	}
	// ...but Envoy can name the policy explicitly.
	o := grpcOutcome(h.check(checkRequest("/api/users/bob/tasks", "", nil, map[string]string{"policy": "shop/public"})))
	if o.status != 200 {
		t.Fatalf("with extension: %+v", o)
	}
	if o := grpcOutcome(h.check(checkRequest("/api/health", "", nil, map[string]string{"policy": "shop/missing"}))); o.status != 403 {
		t.Fatalf("unknown policy: %+v", o)
	}
}

func TestHotReloadKeepsLastGoodPolicies(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 100)})
	admin := h.token("root", map[string]any{"role": "admin"})
	status := func() int {
		return grpcOutcome(h.check(checkRequest("/api/users/bob/tasks", admin, nil, nil))).status
	}
	if s := status(); s != 200 {
		t.Fatalf("admin before reload: %d", s)
	}
	// Remove the admin bypass: the change applies without a restart.
	h.write("tasks.yaml", strings.Replace(policyYAML("tasks-api", h.key.JWKS(), 100), "        allowIf: {claim: role, values: [admin]}\n", "", 1))
	h.waitFor("the edited policy to apply", func() bool { return status() == 403 })

	// A broken edit is logged with its field path and changes nothing.
	h.write("tasks.yaml", strings.Replace(policyYAML("tasks-api", h.key.JWKS(), 100), "requests: 100", "requests: 0", 1))
	h.waitFor("the broken edit to be reported", func() bool {
		logs := h.logs.String()
		return strings.Contains(logs, `"reason":"InvalidSpec"`) && strings.Contains(logs, `spec.rules[1].limits[0].requests`) &&
			strings.Contains(logs, "its last good version keeps serving")
	})
	if s := status(); s != 403 {
		t.Fatalf("after a broken edit: %d, want the last good policy (403)", s)
	}
	if !h.srv.Ready() {
		t.Fatal("a broken edit made the server unready")
	}
}

// Issue 8: with a typo in one file, edits, additions and deletions of
// other files still apply: here the deletion of the file that made
// /reports public, which makes it private (default deny).
func TestBrokenFileDoesNotHoldBackOtherFiles(t *testing.T) {
	public := func(name, prefix string) string {
		return strings.NewReplacer("name: public", "name: "+name, "spec:\n", "spec:\n  pathPrefix: "+prefix+"\n").Replace(otherPolicy)
	}
	h := start(t, map[string]string{
		"a.yaml":       policyYAML("tasks-api", "$JWKS", 100),
		"reports.yaml": public("reports", "/reports"),
	})
	status := func(path string) int { return grpcOutcome(h.check(checkRequest(path, "", nil, nil))).status }
	if s := status("/reports/q1"); s != 200 {
		t.Fatalf("/reports before: %d", s)
	}

	h.write("a.yaml", strings.Replace(policyYAML("tasks-api", h.key.JWKS(), 100), "anonymous: true", "anonymus: true", 1))
	h.waitFor("the typo to be reported", func() bool { return strings.Contains(h.logs.String(), "anonymus") })
	if s := status("/api/health"); s != 200 {
		t.Fatalf("a.yaml's last good version does not serve: %d", s)
	}

	h.write("b.yaml", public("b", "/b"))
	h.waitFor("an added file to apply", func() bool { return status("/b/x") == 200 })
	h.write("reports.yaml", public("reports", "/reports2"))
	h.waitFor("an edited file to apply", func() bool { return status("/reports2/q1") == 200 })
	if err := os.Remove(filepath.Join(h.dir, "reports.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("a deleted file to apply", func() bool { return status("/reports2/q1") == 403 })
	if s := status("/api/health"); s != 200 {
		t.Fatalf("a.yaml's last good version stopped serving: %d", s)
	}
}

// Issue 8 §8, in file mode: evil/grab names shop's host with a longer
// prefix and an anonymous rule; shop owns the host (its policy is older:
// it comes first in file order), so evil/grab does not serve there and
// shop's policy decides. With --cross-namespace-hosts, evil/grab wins.
func TestHostOwnershipInFiles(t *testing.T) {
	shop := strings.Replace(policyYAML("tasks", "$JWKS", 100), `["api.example.com"]`, `["api.example.test"]`, 1)
	evil := `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: grab, namespace: evil}
spec:
  hosts: ["api.example.test"]
  pathPrefix: /api/users
  rules:
    - {name: grab, path: /api/users/**, anonymous: true}
`
	files := map[string]string{"a-shop.yaml": shop, "b-evil.yaml": evil}
	req := checkRequest("/api/users/bob/tasks", "", nil, nil)
	req.Attributes.Request.Http.Host = "api.example.test"
	req.Attributes.Request.Http.Headers[":authority"] = "api.example.test"
	for name, tc := range map[string]struct {
		cross  bool
		status int
	}{
		"hosts owned by namespace":   {false, 401},
		"with cross-namespace-hosts": {true, 200},
	} {
		t.Run(name, func(t *testing.T) {
			h := start(t, files, func(o *server.Options) { o.CrossNamespaceHosts = tc.cross })
			if o := grpcOutcome(h.check(req)); o.status != tc.status {
				t.Fatalf("anonymous GET /api/users/bob/tasks: %d, want %d", o.status, tc.status)
			}
			st, _ := h.srv.Policies().StatusFrom("evil", "grab", policyset.Origin{File: "policies.yaml"})
			if tc.cross != st.Ready() || !tc.cross && !strings.Contains(st.Message, "belongs to namespace shop") {
				t.Fatalf("evil/grab status %+v", st)
			}
		})
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 3)})
	h.check(checkRequest("/api/users/bob/tasks", "", nil, nil))
	h.check(checkRequest("/api/users/bob/tasks", "a.b.c", nil, nil))
	if code, _ := get(t, h.srv.Addr("health"), "/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get(t, h.srv.Addr("health"), "/readyz"); code != 200 || !strings.Contains(body, `"quotaStore":"up"`) {
		t.Errorf("/readyz %d %s", code, body)
	}
	_, metrics := get(t, h.srv.Addr("metrics"), "/metrics")
	for _, want := range []string{
		`tollgate_decisions_total{mode="enforce",policy="shop/tasks-api",reason="missing",result="deny",rule="own-tasks"} 1`,
		`tollgate_jwt_verification_failures_total{reason="bad_signature"} 0`,
		// One place counts each reason: a missing token, which never
		// reaches a verifier, counts as a token failure like the others.
		`tollgate_jwt_verification_failures_total{reason="missing"} 1`,
		`tollgate_jwt_verification_failures_total{reason="malformed"} 1`,
		`tollgate_check_duration_seconds_count{transport="grpc"} 2`,
		`tollgate_policies_loaded 1`,
		`tollgate_quota_store_up 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	hc := healthpb.NewHealthClient(h.conn)
	resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc health: %v %v", resp, err)
	}
}

// TestOnReadyOnce checks that Options.OnReady runs once, when the server
// first becomes ready, and not again as policies change.
func TestOnReadyOnce(t *testing.T) {
	var calls atomic.Int32
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 3)}, func(o *server.Options) {
		o.OnReady = func() { calls.Add(1) }
	})
	h.waitFor("OnReady", func() bool { return calls.Load() > 0 })
	h.write("public.yaml", otherPolicy)
	h.waitFor("the second policy", func() bool { return h.srv.Engine().Snapshot().Len() == 2 })
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnReady ran %d times, want once", n)
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 3)},
		func(o *server.Options) { o.PprofAddr = "127.0.0.1:0" })
	if code, body := get(t, h.srv.Addr("pprof"), "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ %d %.100s", code, body)
	}
	if code, _ := get(t, h.srv.Addr("metrics"), "/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ on the metrics port: %d, want 404", code)
	}
	if addr := start(t, nil).srv.Addr("pprof"); addr != "" {
		t.Errorf("pprof listens on %s by default", addr)
	}
}

func TestGracefulShutdownFinishesInFlightChecks(t *testing.T) {
	// A JWKS endpoint that holds every fetch until released keeps a check
	// that waits for the key set in flight while the server is told to stop.
	key := jwttest.NewEd25519(t)
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		io.WriteString(w, key.JWKS())
	}))
	defer jwks.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	remote := strings.Replace(policyYAML("tasks-api", "unused", 10), "    jwks: 'unused'", "    jwksURI: "+jwks.URL, 1)
	h := start(t, map[string]string{"tasks.yaml": remote})
	token := key.Mint(t, jwttest.Claims("alice", issuer, "", time.Now(), time.Hour))

	result := make(chan *authv3.CheckResponse, 1)
	go func() {
		resp, err := h.auth.Check(context.Background(), checkRequest("/api/users/alice/tasks", token, nil, nil))
		if err != nil {
			t.Errorf("in-flight Check failed: %v", err)
		}
		result <- resp
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the JWKS endpoint")
	}
	// The check is in flight once it has looked up its token: it then
	// waits for the held key set.
	h.waitFor("the check to be in flight", func() bool {
		resp, err := http.Get("http://" + h.srv.Addr("metrics") + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `tollgate_token_cache_lookups_total{result="miss"} 1`)
	})
	h.cancel() // SIGTERM
	// New connections are refused once the listener closes...
	h.waitFor("the gRPC listener to close", func() bool {
		c, err := net.DialTimeout("tcp", h.srv.Addr("grpc"), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// ...while the in-flight check still completes.
	close(release)
	select {
	case resp := <-result:
		if o := grpcOutcome(resp); o.status != 200 {
			t.Fatalf("in-flight check: %+v", o)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight check did not finish")
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
}

// A policy broken from the start never had a good version: it serves
// nothing, says so (not "keeping the last good"), and holds back neither
// readiness nor the other policies.
func TestBrokenPolicyAtStartDoesNotHoldBackReadiness(t *testing.T) {
	broken := strings.Replace(otherPolicy, "anonymous: true", "anonymous: true\n      path: /a/**/b", 1)
	tasks := policyYAML("tasks-api", "$JWKS", 3)
	h := start(t, map[string]string{"a-broken.yaml": broken, "tasks.yaml": tasks})
	hc := healthpb.NewHealthClient(h.conn)
	resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health = %v, %v; want SERVING", resp.GetStatus(), err)
	}
	if code, _ := get(t, h.srv.Addr("health"), "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d", code)
	}
	if o := grpcOutcome(h.check(checkRequest("/api/health", "", nil, nil))); o.status != 200 {
		t.Fatalf("tasks-api does not serve beside the broken policy: %+v", o)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, `"policy":"shop/public"`) || !strings.Contains(logs, "the policy is not served") || strings.Contains(logs, "last good") {
		t.Fatalf("logs do not say that shop/public is not served, or claim a last good version:\n%s", logs)
	}
	// The fix applies.
	h.write("a-broken.yaml", otherPolicy)
	h.waitFor("the fixed policy to serve", func() bool {
		return grpcOutcome(h.check(checkRequest("/other", "", nil, nil))).status == 200
	})
}
