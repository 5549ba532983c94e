package httpauth_test

import (
	"net/http/httptest"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
)

func TestRequest(t *testing.T) {
	tests := map[string]struct {
		target  string
		headers map[string]string
		method  string
		host    string
		path    string
	}{
		"Envoy HTTP mode: the request itself": {"/api/x?y=1", nil, "POST", "example.com", "/api/x?y=1"},
		"Traefik and nginx forwarded headers": {"/auth", map[string]string{"X-Forwarded-Method": "DELETE", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/api/users/alice"}, "DELETE", "api.example.com", "/api/users/alice"},
		"nginx X-Original-URI":                {"/auth", map[string]string{"X-Original-URI": "/api/y"}, "POST", "example.com", "/api/y"},
		"the raw target is kept unnormalized": {"/api/%2e%2e/admin", nil, "POST", "example.com", "/api/%2e%2e/admin"},
		"an absolute-form target":             {"/x", map[string]string{"X-Forwarded-Uri": "https://api.example.com/api/y?z=1"}, "POST", "example.com", "/api/y?z=1"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "http://example.com"+tc.target, nil)
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			r.Header.Add("X-Multi", "a")
			r.Header.Add("X-Multi", "b")
			got := httpauth.Request(r)
			if got.Method != tc.method || got.Host != tc.host || got.Path != tc.path {
				t.Errorf("got %s %s %s, want %s %s %s", got.Method, got.Host, got.Path, tc.method, tc.host, tc.path)
			}
			if got.Headers["x-multi"] != "a,b" || got.SourceIP != "192.0.2.1" {
				t.Errorf("headers %v source %q", got.Headers, got.SourceIP)
			}
		})
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
