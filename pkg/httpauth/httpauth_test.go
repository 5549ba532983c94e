package httpauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
)

func TestRequest(t *testing.T) {
	fwd := func(method, host, uri string, extra ...string) map[string]string {
		h := map[string]string{"X-Forwarded-Method": method, "X-Forwarded-Host": host, "X-Forwarded-Uri": uri}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	orig := func(method, uri string, extra ...string) map[string]string {
		h := map[string]string{"X-Original-Method": method, "X-Original-URI": uri}
		for i := 0; i+1 < len(extra); i += 2 {
			h[extra[i]] = extra[i+1]
		}
		return h
	}
	tests := map[string]struct {
		mode    httpauth.Mode
		target  string
		headers map[string]string
		method  string
		host    string
		path    string
		err     string // part of the error message; "" for none
	}{
		"forwarded: the three headers": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("DELETE", "api.example.com", "/api/users/alice"),
			method: "DELETE", host: "api.example.com", path: "/api/users/alice"},
		"forwarded: the method as sent": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("delete", "api.example.com", "/x"),
			method: "delete", host: "api.example.com", path: "/x"},
		"forwarded: the raw URI is kept unnormalized": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("GET", "api.example.com", "/api/%2e%2e/admin"),
			method: "GET", host: "api.example.com", path: "/api/%2e%2e/admin"},
		"forwarded: an absolute URI of the host": {
			mode: httpauth.Forwarded, target: "/x", headers: fwd("GET", "api.example.com", "https://API.example.com:443/api/y?z=1"),
			method: "GET", host: "api.example.com", path: "/api/y?z=1"},
		"forwarded: an absolute URI with only a query": {
			mode: httpauth.Forwarded, target: "/x", headers: fwd("GET", "api.example.com", "http://api.example.com?z=1"),
			method: "GET", host: "api.example.com", path: "/?z=1"},
		"forwarded: an absolute URI of another host": {
			mode: httpauth.Forwarded, target: "/x", headers: fwd("GET", "api.example.com", "https://evil.example.com/api/y"),
			err: "another host"},
		"forwarded: X-Original-URI with the same value": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("GET", "api.example.com", "/x", "X-Original-URI", "/x", "X-Original-Method", "GET"),
			method: "GET", host: "api.example.com", path: "/x"},
		"forwarded: the method falls back to nothing": {
			mode: httpauth.Forwarded, target: "/auth", headers: map[string]string{"X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/x"},
			err: "X-Forwarded-Method is required"},
		"forwarded: the host falls back to nothing": {
			mode: httpauth.Forwarded, target: "/auth", headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/x"},
			err: "X-Forwarded-Host is required"},
		"forwarded: the URI falls back to nothing": {
			mode: httpauth.Forwarded, target: "/api/users/alice", headers: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com"},
			err: "X-Forwarded-Uri is required"},
		"forwarded: X-Original-URI does not stand in": {
			mode: httpauth.Forwarded, target: "/auth", headers: orig("GET", "/x"), err: "X-Forwarded-Method is required"},
		"forwarded: an empty header is missing": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("GET", "api.example.com", ""), err: "X-Forwarded-Uri is required"},
		"forwarded: a second opinion on the URI": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("GET", "api.example.com", "/api/health", "X-Original-URI", "/api/users/bob/tasks"),
			err: "X-Original-URI disagrees with X-Forwarded-Uri"},
		"forwarded: a second opinion on the method": {
			mode: httpauth.Forwarded, target: "/auth", headers: fwd("GET", "api.example.com", "/x", "X-Original-Method", "DELETE"),
			err: "X-Original-Method disagrees with X-Forwarded-Method"},

		"original: URI and method, host from Host": {
			mode: httpauth.Original, target: "/_tollgate", headers: orig("DELETE", "/api/users/bob/tasks"),
			method: "DELETE", host: "example.com", path: "/api/users/bob/tasks"},
		"original: host from X-Original-Host": {
			mode: httpauth.Original, target: "/_tollgate", headers: orig("GET", "/x", "X-Original-Host", "api.example.com"),
			method: "GET", host: "api.example.com", path: "/x"},
		"original: X-Forwarded-Host is not an opinion on URI or method": {
			mode: httpauth.Original, target: "/_tollgate", headers: orig("GET", "/x", "X-Forwarded-Host", "other.example.com"),
			method: "GET", host: "example.com", path: "/x"},
		"original: the nginx bypass": {
			mode: httpauth.Original, target: "/_tollgate",
			headers: orig("DELETE", "/api/users/bob/tasks", "X-Forwarded-Uri", "/api/health", "X-Forwarded-Method", "GET"),
			err:     "X-Forwarded-Uri disagrees with X-Original-URI"},
		"original: a second opinion on the method only": {
			mode: httpauth.Original, target: "/_tollgate", headers: orig("DELETE", "/x", "X-Forwarded-Method", "GET"),
			err: "X-Forwarded-Method disagrees with X-Original-Method"},
		"original: the same opinion twice": {
			mode: httpauth.Original, target: "/_tollgate", headers: orig("GET", "/x", "X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/x"),
			method: "GET", host: "example.com", path: "/x"},
		"original: the method never falls back to the subrequest's": {
			mode: httpauth.Original, target: "/_tollgate", headers: map[string]string{"X-Original-URI": "/x"},
			err: "X-Original-Method is required; in nginx: proxy_set_header X-Original-Method $request_method;"},
		"original: the URI never falls back to the subrequest's": {
			mode: httpauth.Original, target: "/_tollgate", headers: map[string]string{"X-Original-Method": "GET"},
			err: "X-Original-URI is required; in nginx: proxy_set_header X-Original-URI $request_uri;"},
		"original: X-Forwarded-* do not stand in": {
			mode: httpauth.Original, target: "/_tollgate", headers: fwd("GET", "api.example.com", "/x"), err: "X-Original-URI is required"},

		"request: the request itself": {
			mode: httpauth.RequestLine, target: "/api/x?y=1", method: "POST", host: "example.com", path: "/api/x?y=1"},
		"request: forwarding headers are ignored": {
			mode: httpauth.RequestLine, target: "/api/users/bob/tasks",
			headers: fwd("GET", "other.example.com", "/api/health", "X-Original-URI", "/api/health", "X-Original-Method", "GET"),
			method:  "POST", host: "example.com", path: "/api/users/bob/tasks"},
		"request: the raw target is kept unnormalized": {
			mode: httpauth.RequestLine, target: "/api/%2e%2e/admin", method: "POST", host: "example.com", path: "/api/%2e%2e/admin"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://example.com"+tc.target, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			r.Header.Add("X-Multi", "a")
			r.Header.Add("X-Multi", "b")
			got, err := httpauth.Request(r, tc.mode)
			if tc.err != "" {
				var e *httpauth.Error
				if !errors.As(err, &e) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want an *Error containing %q", err, tc.err)
				}
				d := httpauth.Rejection(err)
				if d.Status != 400 || d.Code != decision.CodeBadRequest || !strings.Contains(d.Message, tc.err) {
					t.Fatalf("rejection %+v", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if got.Method != tc.method || got.Host != tc.host || got.Path != tc.path {
				t.Errorf("got %s %s %s, want %s %s %s", got.Method, got.Host, got.Path, tc.method, tc.host, tc.path)
			}
			if got.Headers["x-multi"] != "a,b" || got.SourceIP != "192.0.2.1" {
				t.Errorf("headers %v source %q", got.Headers, got.SourceIP)
			}
		})
	}
}

func TestRequestRepeatedHeaders(t *testing.T) {
	for _, tc := range []struct {
		mode   httpauth.Mode
		header string
	}{
		{httpauth.Forwarded, "X-Forwarded-Uri"}, {httpauth.Forwarded, "X-Forwarded-Method"}, {httpauth.Forwarded, "X-Forwarded-Host"},
		{httpauth.Original, "X-Original-URI"}, {httpauth.Original, "X-Original-Method"}, {httpauth.Original, "X-Original-Host"},
	} {
		r := httptest.NewRequest("GET", "http://example.com/auth", nil)
		for _, h := range []string{"X-Forwarded-Uri", "X-Original-URI"} {
			r.Header.Set(h, "/x")
		}
		for _, h := range []string{"X-Forwarded-Method", "X-Original-Method"} {
			r.Header.Set(h, "GET")
		}
		r.Header.Set("X-Forwarded-Host", "example.com")
		r.Header.Set("X-Original-Host", "example.com")
		r.Header.Add(tc.header, r.Header.Get(tc.header)+"y")
		if _, err := httpauth.Request(r, tc.mode); err == nil || !strings.Contains(err.Error(), tc.header+" is given more than once") {
			t.Errorf("%v, %s twice: error %v", tc.mode, tc.header, err)
		}
	}
}

func TestParseMode(t *testing.T) {
	for _, name := range []string{"forwarded", "original", "request"} {
		m, err := httpauth.ParseMode(name)
		if err != nil || m.String() != name {
			t.Errorf("ParseMode(%q) = %v, %v", name, m, err)
		}
	}
	for _, bad := range []string{"", "Forwarded", "x-forwarded", "envoy"} {
		if _, err := httpauth.ParseMode(bad); err == nil {
			t.Errorf("ParseMode(%q) accepted", bad)
		}
	}
}

func TestWriteDecision(t *testing.T) {
	w := httptest.NewRecorder()
	httpauth.WriteDecision(w, &decision.Decision{Allowed: true, Status: 200,
		UpstreamHeaders: []decision.Header{{Name: "x-user-id", Value: "alice"}},
		RemoveHeaders:   []string{"x-user-plan", "authorization"}})
	if w.Code != 200 || w.Header().Get("X-User-Id") != "alice" || w.Header().Get(httpauth.HeaderRemove) != "x-user-plan,authorization" || w.Body.Len() != 0 {
		t.Errorf("allow: %d %v %q", w.Code, w.Header(), w.Body.String())
	}
	w = httptest.NewRecorder()
	httpauth.WriteDecision(w, &decision.Decision{Status: 401, Code: decision.CodeUnauthenticated, Message: "m",
		ResponseHeaders: []decision.Header{{Name: "www-authenticate", Value: `Bearer error="invalid_token"`}},
		UpstreamHeaders: []decision.Header{{Name: "x-user-id", Value: "never"}}})
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") == "" || w.Header().Get("X-User-Id") != "" ||
		w.Header().Get("Content-Type") != "application/json" || w.Body.String() != `{"error":"unauthenticated","message":"m"}` {
		t.Errorf("deny: %d %v %q", w.Code, w.Header(), w.Body.String())
	}
}

// TestRequestHeaderNames checks that every header reaches the decision
// core under its lower-case name, common or not, with repeated values
// joined.
func TestRequestHeaderNames(t *testing.T) {
	r := httptest.NewRequest("GET", "/auth", nil)
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Host", "api.example.com")
	r.Header.Set("X-Forwarded-Uri", "/x")
	r.Header.Set("Authorization", "Bearer t")
	r.Header.Set("Sec-Ch-Ua-Platform", `"Linux"`)
	r.Header.Set("X-Tenant-Of-Some-App", "acme")
	r.Header["x-not-canonical"] = []string{"v"}
	r.Header.Add("X-Forwarded-For", "203.0.113.7")
	r.Header.Add("X-Forwarded-For", "198.51.100.1")
	req, err := httpauth.Request(r, httpauth.Forwarded)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"authorization": "Bearer t", "sec-ch-ua-platform": `"Linux"`, "x-tenant-of-some-app": "acme",
		"x-not-canonical": "v", "x-forwarded-for": "203.0.113.7,198.51.100.1", "x-forwarded-uri": "/x",
	} {
		if got, ok := req.Headers[name]; !ok || got != want {
			t.Errorf("%s: %q (%v), want %q", name, got, ok, want)
		}
	}
	for name := range req.Headers {
		if name != strings.ToLower(name) {
			t.Errorf("header name %q is not lower case", name)
		}
	}
}

// engineDecider is a decision.Engine as a Decider, as the server wires it.
type engineDecider struct{ *decision.Engine }

func (e engineDecider) Decide(ctx context.Context, req *decision.Request, d *decision.Decision) {
	e.DecideInto(ctx, req, d)
}

// TestHandlerChecksThePath checks that a forward-auth request goes through
// the decision core's path check in every mode and path mode: encodings
// that a lenient backend reads as a dot or a separator (overlong UTF-8,
// double encoding) are the 400 of a path not allowed, even where every
// path is allowed.
func TestHandlerChecksThePath(t *testing.T) {
	paths := map[string][2]int{ // strict, normalizing
		"/api/users/alice/tasks":                {200, 200},
		"/files/100%25":                         {200, 200},
		"/files/caf%C3%A9/%E2%82%AC":            {200, 200},
		"/files/caf%E9":                         {200, 200},
		"/files/%2e%2e/admin":                   {400, 200},
		"/files/%C0%AE%C0%AE/admin":             {400, 400},
		"/files/%c0%ae%c0%ae/admin":             {400, 400},
		"/files/..%C0%AFadmin":                  {400, 400},
		"/files/%E0%80%AE%E0%80%AE/admin":       {400, 400},
		"/files/%F0%80%80%AE%F0%80%80%AE/admin": {400, 400},
		"/files/%252e%252e/admin":               {400, 400},
		"/files/..%252F..%252Fadmin":            {400, 400},
		"/files/..%255c..%255cadmin?x=1":        {400, 400},
	}
	for i, normalize := range []bool{false, true} {
		h := func(mode httpauth.Mode) *httpauth.Handler {
			e := decision.NewEngine(decision.Options{DefaultAllow: true, NormalizePaths: normalize})
			return httpauth.NewHandler(engineDecider{e}, httpauth.Options{Mode: mode})
		}
		for path, wants := range paths {
			want := wants[i]
			for _, m := range []struct {
				mode httpauth.Mode
				req  func() *http.Request
			}{
				{httpauth.Forwarded, func() *http.Request {
					r := httptest.NewRequest("GET", "/auth", nil)
					r.Header.Set("X-Forwarded-Method", "GET")
					r.Header.Set("X-Forwarded-Host", "api.example.com")
					r.Header.Set("X-Forwarded-Uri", path)
					return r
				}},
				{httpauth.Original, func() *http.Request {
					r := httptest.NewRequest("GET", "/auth", nil)
					r.Header.Set("X-Original-Method", "GET")
					r.Header.Set("X-Original-URI", path)
					return r
				}},
				{httpauth.RequestLine, func() *http.Request { return httptest.NewRequest("GET", path, nil) }},
			} {
				w := httptest.NewRecorder()
				h(m.mode).ServeHTTP(w, m.req())
				if w.Code != want {
					t.Errorf("normalize=%v %s %q: %d %s, want %d", normalize, m.mode, path, w.Code, w.Body.String(), want)
				}
				if body := `{"error":"bad_request","message":"the request path is not allowed"}`; want == 400 && w.Body.String() != body {
					t.Errorf("normalize=%v %s %q: body %s, want %s", normalize, m.mode, path, w.Body.String(), body)
				}
			}
		}
	}
}
