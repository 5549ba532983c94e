package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tollgate-dev/tollgate/pkg/httpauth"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

// securityPolicies is the scenario of the shared request table: the tasks
// API, a wildcard and an any-host policy a malformed host must never fall
// through to, a second policy forwarding a claim of its own, and a dryRun
// policy with a longer prefix that must never take traffic.
const securityPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: tasks-api, namespace: shop}
spec:
  hosts: ["api.example.com"]
  pathPrefix: /api
  jwt:
    issuer: ` + issuer + `
    jwks: '$JWKS'
    forwardClaims: {x-user-id: sub, x-user-plan: plan}
  rules:
    - {name: health, methods: [GET], path: /api/health, anonymous: true}
    - {name: comments, methods: [POST], path: /api/comments, anonymous: true}
    - name: own-tasks
      methods: [GET, PUT, PATCH, DELETE]
      path: /api/users/{userId}/tasks/**
      owner: {path: userId}
    - name: files
      methods: [GET]
      path: /api/files
      owner: {query: owner}
---
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: shadow, namespace: shop}
spec:
  hosts: ["api.example.com"]
  pathPrefix: /api/users
  mode: dryRun
  rules:
    - {name: everything, anonymous: true}
---
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: wild, namespace: shop}
spec:
  hosts: ["*.example.com"]
  rules:
    - {name: everything, anonymous: true}
---
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: anywhere, namespace: shop}
spec:
  rules:
    - {name: everything, anonymous: true}
---
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: billing, namespace: shop}
spec:
  hosts: ["billing.example.com"]
  jwt:
    issuer: ` + issuer + `
    jwks: '$JWKS'
    forwardClaims: {x-billing-account: account}
  rules:
    - {name: any}
`

// forwardedClaims are every header a policy of securityPolicies forwards.
var forwardedClaims = []string{"x-billing-account", "x-user-id", "x-user-plan"}

// original is the request a client sent to the proxy: what tollgate must
// authorize, whichever adapter describes it.
type original struct {
	method, host, target string
	// headers are the client's own, forwarding headers included.
	headers map[string]string
}

// A transport describes an original request to tollgate the way one
// proxy does, and returns what the proxy would do with the answer.
type transport struct {
	name string
	send func(t *testing.T, r original) outcome
}

// transports starts a tollgate for each --forward-auth mode (same policies,
// same key) and returns the gRPC adapter and the HTTP adapter in each mode,
// and the server behind the gRPC one.
func transports(t *testing.T, key *jwttest.Key, files map[string]string) ([]transport, *harness) {
	t.Helper()
	servers := map[httpauth.Mode]*harness{}
	for _, m := range []httpauth.Mode{httpauth.Forwarded, httpauth.Original, httpauth.RequestLine} {
		servers[m] = startWithKey(t, key, files, func(o *server.Options) { o.ForwardAuth = m })
	}
	grpcH := servers[httpauth.Forwarded]
	ts := []transport{
		{"grpc", func(t *testing.T, r original) outcome { return grpcOutcome(grpcH.check(envoyCheck(r))) }},
		{"http-forwarded", func(t *testing.T, r original) outcome {
			// Traefik and Caddy overwrite X-Forwarded-*; the client's
			// other headers pass.
			return rawHTTP(t, servers[httpauth.Forwarded], "GET", "/", "tollgate", r.headers, map[string]string{
				"X-Forwarded-Method": r.method, "X-Forwarded-Host": r.host, "X-Forwarded-Uri": r.target})
		}},
		{"http-original", func(t *testing.T, r original) outcome {
			// The nginx example sets X-Original-*; the client's other
			// headers pass, its X-Forwarded-* included.
			return rawHTTP(t, servers[httpauth.Original], "GET", "/_tollgate", "tollgate", r.headers, map[string]string{
				"X-Original-Method": r.method, "X-Original-Host": r.host, "X-Original-URI": r.target})
		}},
		{"http-request", func(t *testing.T, r original) outcome {
			// Envoy's HTTP ext_authz sends the original request line and
			// Host, and the client's headers.
			return rawHTTP(t, servers[httpauth.RequestLine], r.method, r.target, r.host, r.headers, nil)
		}},
	}
	return ts, grpcH
}

// envoyCheck is the CheckRequest Envoy sends for r.
func envoyCheck(r original) *authv3.CheckRequest {
	hs := map[string]string{":authority": r.host, ":method": r.method, ":path": r.target}
	for k, v := range r.headers {
		hs[strings.ToLower(k)] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: r.method, Host: r.host, Path: r.target, Headers: hs,
		}},
	}}
}

// rawHTTP sends one HTTP/1.1 request as written, byte for byte, so that
// targets, methods and hosts reach tollgate unchanged by a client library.
// set overrides headers of the same name (the proxy's own).
func rawHTTP(t *testing.T, h *harness, method, target, host string, headers, set map[string]string) outcome {
	t.Helper()
	conn, err := net.DialTimeout("tcp", h.srv.Addr("http"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for k, v := range headers {
		if _, overridden := set[http.CanonicalHeaderKey(k)]; !overridden {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	for k, v := range set {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	o := outcome{status: resp.StatusCode, headers: map[string]string{}, body: string(body)}
	for k := range resp.Header {
		o.headers[strings.ToLower(k)] = resp.Header.Get(k)
	}
	if rm := resp.Header.Get(httpauth.HeaderRemove); rm != "" {
		o.removed = strings.Split(rm, ",")
	}
	return o
}

// TestRequestSecurity is the shared decision table of issue 9 ("the
// request tollgate authorizes must be the request the upstream serves"):
// every case goes through the gRPC adapter and the HTTP adapter in each
// --forward-auth mode, on real listeners.
func TestRequestSecurity(t *testing.T) {
	key := jwttest.NewEd25519(t)
	ts, grpcH := transports(t, key, map[string]string{"policies.yaml": securityPolicies})
	h := &harness{t: t, key: key}
	alice := h.token("alice", nil)
	billing := h.token("alice", map[string]any{"account": "7"})
	bearer := func(token string, kv ...string) map[string]string {
		m := map[string]string{}
		if token != "" {
			m["Authorization"] = "Bearer " + token
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	getReq := func(target, token string, kv ...string) original {
		return original{method: "GET", host: "api.example.com", target: target, headers: bearer(token, kv...)}
	}
	at := func(host string, r original) original { r.host = host; return r }
	as := func(method string, r original) original { r.method = method; return r }
	removes := func(want ...string) func(*testing.T, outcome) {
		return func(t *testing.T, o outcome) {
			for _, hdr := range forwardedClaims {
				set, removed := o.headers[hdr] != "", slices.Contains(o.removed, hdr)
				if set == removed {
					t.Errorf("%s: set %v, removed %v (removed %v); want exactly one", hdr, set, removed, o.removed)
				}
				if set && !slices.Contains(want, hdr) {
					t.Errorf("%s is set to %q", hdr, o.headers[hdr])
				}
			}
			for _, hdr := range want {
				if o.headers[hdr] == "" {
					t.Errorf("%s is not set", hdr)
				}
			}
		}
	}

	tests := []struct {
		class, name string
		req         original
		status      int
		check       func(*testing.T, outcome)
		// skip names transports that cannot carry the request, and why.
		skip map[string]string
	}{
		// A control: the caller's own tasks.
		{class: "control", name: "alice reads her tasks", req: getReq("/api/users/alice/tasks", alice, "X-User-Id", "bob"), status: 200,
			check: func(t *testing.T, o outcome) {
				if o.headers["x-user-id"] != "alice" {
					t.Errorf("x-user-id = %q, want alice", o.headers["x-user-id"])
				}
			}},

		// §2: only a path in normal form is authorized.
		{class: "paths", name: "a dot-dot to another user's tasks", req: getReq("/api/users/alice/../bob/tasks", alice), status: 400},
		{class: "paths", name: "a dot-dot to the caller's own tasks", req: getReq("/api/users/bob/../alice/tasks", alice), status: 400},
		{class: "paths", name: "an encoded dot-dot", req: getReq("/api/users/alice/%2e%2e/bob/tasks", alice), status: 400},
		{class: "paths", name: "an upper-case encoded dot-dot", req: getReq("/api/users/alice/%2E%2E/bob/tasks", alice), status: 400},
		{class: "paths", name: "a half-encoded dot-dot", req: getReq("/api/users/alice/.%2e/bob/tasks", alice), status: 400},
		{class: "paths", name: "a dot segment", req: getReq("/api/users/alice/./tasks", alice), status: 400},
		{class: "paths", name: "the triple-slash owner switch", req: getReq("/api/users/bob/tasks///../../alice/tasks", alice), status: 400},
		{class: "paths", name: "a double slash", req: getReq("/api//users/alice/tasks", alice), status: 400},
		{class: "paths", name: "an encoded unreserved letter", req: getReq("/api/users/%61lice/tasks", alice), status: 400},
		{class: "paths", name: "an encoded slash", req: getReq("/api/users/alice%2Ftasks", alice), status: 400},
		{class: "paths", name: "an encoded backslash", req: getReq("/api/users/alice%5ctasks", alice), status: 400},
		{class: "paths", name: "an encoded NUL", req: getReq("/api/users/alice%00/tasks", alice), status: 400},
		{class: "paths", name: "an invalid escape", req: getReq("/api/users/alice%zz/tasks", alice), status: 400},
		{class: "paths", name: "a dot-dot with a parameter", req: getReq("/api/users/bob/..;/alice/tasks", alice), status: 400},
		{class: "paths", name: "an overlong dot-dot out of own tasks", req: getReq("/api/users/alice/tasks/%C0%AE%C0%AE/%c0%ae%c0%ae/bob/tasks", alice), status: 400},
		{class: "paths", name: "a double-encoded dot-dot out of own tasks", req: getReq("/api/users/alice/tasks/%252e%252e/%252E%252E/bob/tasks", alice), status: 400},
		{class: "paths", name: "a query names the owner", req: getReq("/api/files?owner=alice", alice), status: 200},
		{class: "paths", name: "a fragment is no query", req: getReq("/api/files#?owner=alice", alice), status: 403},
		{class: "paths", name: "a query inside a fragment is no query", req: getReq("/api/files?x=1#&owner=alice", alice), status: 403},

		// §3: every allow removes every forwarded-claim header.
		{class: "anonymous", name: "an anonymous rule removes identity headers", status: 200,
			req:   getReq("/api/health", "", "X-User-Id", "bob", "X-User-Plan", "premium", "X-Billing-Account", "1"),
			check: removes()},
		{class: "anonymous", name: "a policy without a jwt block removes them too", status: 200,
			req:   at("www.example.com", getReq("/x", "", "X-User-Id", "bob", "X-Billing-Account", "1")),
			check: removes()},
		{class: "anonymous", name: "an authenticated allow removes other policies' headers", status: 200,
			req:   getReq("/api/users/alice/tasks", alice, "X-User-Id", "bob", "X-Billing-Account", "1"),
			check: removes("x-user-id")},
		{class: "anonymous", name: "another policy's own header is set", status: 200,
			req:   at("billing.example.com", getReq("/invoices", billing, "X-User-Id", "bob", "X-Billing-Account", "1")),
			check: removes("x-billing-account")},

		// §4: a method override must be allowed too.
		{class: "override", name: "X-HTTP-Method-Override to DELETE", status: 403,
			req: as("POST", getReq("/api/comments", "", "X-HTTP-Method-Override", "DELETE"))},
		{class: "override", name: "X-HTTP-Method to DELETE", status: 403,
			req: as("POST", getReq("/api/comments", "", "X-HTTP-Method", "DELETE"))},
		{class: "override", name: "X-Method-Override to delete", status: 403,
			req: as("POST", getReq("/api/comments", "", "X-Method-Override", "delete"))},
		{class: "override", name: "a _method query parameter", status: 403, req: as("POST", getReq("/api/comments?_method=DELETE", ""))},
		{class: "override", name: "an override the caller may use", status: 200,
			req: getReq("/api/users/alice/tasks", alice, "X-HTTP-Method-Override", "DELETE")},
		{class: "override", name: "an override to the caller's own method", status: 200,
			req: as("POST", getReq("/api/comments", "", "X-HTTP-Method-Override", "POST"))},

		// §6: a malformed host is 400 and never reaches the wildcard or
		// any-host policy, which would allow.
		{class: "hosts", name: "repeated trailing dots", req: at("api.example.com..", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "repeated dots inside", req: at("api..example.com", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "two ports", req: at("api.example.com:80:80", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "a name in brackets", req: at("[api.example.com]", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "an encoded dot", req: at("api.example.com%2e", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "user info", req: at("x@api.example.com", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "an empty host", req: at("", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "a trailing space", req: at("api.example.com ", getReq("/api/users/bob/tasks", "")), status: 400,
			skip: map[string]string{"http-forwarded": trimmed, "http-original": trimmed, "http-request": trimmed}},
		{class: "hosts", name: "a tab inside", req: at("api.example.com\t.evil", getReq("/api/users/bob/tasks", "")), status: 400},
		{class: "hosts", name: "an upper-case FQDN is the exact host", req: at("API.Example.COM.", getReq("/api/users/bob/tasks", "")), status: 401},
		{class: "hosts", name: "a name under the wildcard", req: at("www.example.com", getReq("/api/users/bob/tasks", "")), status: 200},

		// §7: a dryRun policy with a longer prefix takes nothing.
		{class: "dry-run", name: "no token", req: getReq("/api/users/bob/tasks", ""), status: 401},
		{class: "dry-run", name: "a garbage token", req: as("DELETE", getReq("/api/users/bob/tasks/1", "garbage")), status: 401},
		{class: "dry-run", name: "another user's token", req: getReq("/api/users/bob/tasks", alice), status: 403},

		// §8: the method exactly as sent.
		{class: "method", name: "a lower-case method", req: as("get", getReq("/api/health", "")), status: 403},
		{class: "method", name: "a method that is no token", req: as("GE(T", getReq("/api/health", "")), status: 400,
			skip: map[string]string{"http-request": "Go's HTTP server refuses the request line itself"}},
	}
	for _, tr := range ts {
		for _, tc := range tests {
			t.Run(tr.name+"/"+tc.class+"/"+tc.name, func(t *testing.T) {
				if why, ok := tc.skip[tr.name]; ok {
					t.Skip(why)
				}
				o := tr.send(t, tc.req)
				if o.status != tc.status {
					t.Fatalf("status %d, want %d (%+v)", o.status, tc.status, o)
				}
				if o.status >= 400 && o.headers["content-type"] == "application/json" {
					wantBody(t, o, map[int]string{400: "bad_request", 401: "unauthenticated", 403: "forbidden"}[o.status])
				}
				if tc.check != nil {
					tc.check(t, o)
				}
			})
		}
	}

	// §7: the dryRun policy was evaluated beside, and counted.
	_, metrics := get(t, grpcH.srv.Addr("metrics"), "/metrics")
	if !strings.Contains(metrics, `tollgate_decisions_total{mode="dryRun",policy="shop/shadow",reason="allowed",result="allow",rule="everything"}`) {
		t.Errorf("/metrics does not count the dryRun policy's decisions:\n%s", grep(metrics, "tollgate_decisions_total"))
	}
}

// trimmed says why a case cannot be carried in an HTTP header: HTTP drops
// the whitespace around a header value, so it never reaches tollgate.
const trimmed = "HTTP trims whitespace around a header value"

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestForwardAuthTrustsOneConvention checks --forward-auth: each mode reads
// the original request from its own convention only, requires its
// headers, and refuses a second opinion from the other convention.
func TestForwardAuthTrustsOneConvention(t *testing.T) {
	key := jwttest.NewEd25519(t)
	files := map[string]string{"policies.yaml": securityPolicies}
	servers := map[string]*harness{}
	for _, m := range []httpauth.Mode{httpauth.Forwarded, httpauth.Original, httpauth.RequestLine} {
		servers[m.String()] = startWithKey(t, key, files, func(o *server.Options) { o.ForwardAuth = m })
	}
	tests := []struct {
		name, mode     string
		method, target string
		headers        map[string]string
		status         int
		message        string // part of the 400 message
	}{
		{name: "the issue's nginx bypass: a client's X-Forwarded-* beside X-Original-*", mode: "original",
			method: "GET", target: "/_tollgate",
			headers: map[string]string{"X-Original-URI": "/api/users/bob/tasks", "X-Original-Method": "DELETE", "X-Original-Host": "api.example.com",
				"X-Forwarded-Uri": "/api/health", "X-Forwarded-Method": "GET"},
			status: 400, message: "X-Forwarded-Uri disagrees with X-Original-URI"},
		{name: "nginx without X-Original-Method: the subrequest's GET is not the method", mode: "original",
			method: "GET", target: "/_tollgate",
			headers: map[string]string{"X-Original-URI": "/api/health", "X-Original-Host": "api.example.com"},
			status:  400, message: "proxy_set_header X-Original-Method $request_method;"},
		{name: "nginx without X-Original-URI", mode: "original",
			method: "GET", target: "/api/health",
			headers: map[string]string{"X-Original-Method": "GET", "X-Original-Host": "api.example.com"},
			status:  400, message: "proxy_set_header X-Original-URI $request_uri;"},
		{name: "nginx: host from Host without X-Original-Host", mode: "original",
			method: "GET", target: "/_tollgate",
			headers: map[string]string{"Host": "api.example.com", "X-Original-URI": "/api/users/bob/tasks", "X-Original-Method": "DELETE"},
			status:  401},
		{name: "forwarded without X-Forwarded-Method", mode: "forwarded",
			method: "DELETE", target: "/",
			headers: map[string]string{"X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/api/users/bob/tasks"},
			status:  400, message: "X-Forwarded-Method is required"},
		{name: "forwarded without X-Forwarded-Host", mode: "forwarded",
			method: "GET", target: "/",
			headers: map[string]string{"Host": "api.example.com", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/health"},
			status:  400, message: "X-Forwarded-Host is required"},
		{name: "forwarded: X-Original-URI does not stand in for X-Forwarded-Uri", mode: "forwarded",
			method: "GET", target: "/",
			headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com", "X-Original-URI": "/api/health"},
			status:  400, message: "X-Forwarded-Uri is required"},
		{name: "forwarded: a client's X-Original-URI disagreeing", mode: "forwarded",
			method: "GET", target: "/",
			headers: map[string]string{"X-Forwarded-Method": "DELETE", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/api/users/bob/tasks",
				"X-Original-URI": "/api/health"},
			status: 400, message: "X-Original-URI disagrees with X-Forwarded-Uri"},
		{name: "forwarded: a client's X-Original-Method disagreeing", mode: "forwarded",
			method: "GET", target: "/",
			headers: map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/api/comments",
				"X-Original-Method": "DELETE"},
			status: 400, message: "X-Original-Method disagrees with X-Forwarded-Method"},
		{name: "request: forwarding headers are ignored", mode: "request",
			method: "DELETE", target: "/api/users/bob/tasks",
			headers: map[string]string{"Host": "api.example.com", "X-Forwarded-Uri": "/api/health", "X-Forwarded-Method": "GET",
				"X-Original-URI": "/api/health", "X-Original-Method": "GET", "X-Forwarded-Host": "www.example.com"},
			status: 401},
	}
	for _, tc := range tests {
		t.Run(tc.mode+"/"+tc.name, func(t *testing.T) {
			host := tc.headers["Host"]
			if host == "" {
				host = "tollgate"
			}
			rest := map[string]string{}
			for k, v := range tc.headers {
				if k != "Host" {
					rest[k] = v
				}
			}
			o := rawHTTP(t, servers[tc.mode], tc.method, tc.target, host, rest, nil)
			if o.status != tc.status {
				t.Fatalf("status %d, want %d (%+v)", o.status, tc.status, o)
			}
			if tc.status == 400 {
				wantBody(t, o, "bad_request")
				if !strings.Contains(o.body, tc.message) {
					t.Errorf("body %s does not name %q", o.body, tc.message)
				}
			}
		})
	}
	// Rejections are decisions too: counted and logged.
	_, metrics := get(t, servers["original"].srv.Addr("metrics"), "/metrics")
	if !strings.Contains(metrics, `reason="`+httpauth.ReasonForwardAuth+`",result="deny"`) {
		t.Errorf("/metrics does not count forward-auth rejections:\n%s", grep(metrics, "tollgate_decisions_total"))
	}
	if logs := servers["original"].logs.String(); !strings.Contains(logs, httpauth.ReasonForwardAuth) {
		t.Errorf("no log line for a rejection:\n%s", logs)
	}
}
