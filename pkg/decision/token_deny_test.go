package decision_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestTokenDenials covers every token deny path (issue 9 §8, issue 11 §2):
// a missing token gets a bare challenge (RFC 6750 §3.1), an invalid one
// error="invalid_token" with a description of its class and never the
// token, and keys that cannot be had a 503 with Retry-After.
func TestTokenDenials(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	key := jwttest.NewEd25519(t)
	tasks := tasksPolicy(key, pt.WithJWTChange(func(j *v1alpha1.JWT) { j.Audiences = []string{"api"} }))
	remote := pt.New(pt.WithName("shop", "remote"), pt.WithPathPrefix("/remote"),
		pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS, j.JWKSURI = "", down.URL }),
		pt.WithRule(v1alpha1.Rule{Name: "any"}))
	f := newFixture(t, decision.Options{}, tasks, remote)
	now := time.Now()
	mint := func(mods ...func(map[string]any)) string {
		c := jwttest.Claims("alice", issuer, "api", now, time.Hour)
		for _, m := range mods {
			m(c)
		}
		return key.MintHeader(t, map[string]any{"kid": key.Kid()}, c)
	}
	valid := mint()
	const invalid = `Bearer realm="tollgate", error="invalid_token", error_description=`
	tests := map[string]struct {
		req       *decision.Request
		status    int
		code      string
		reason    jwt.Reason
		challenge string // "" = no WWW-Authenticate
	}{
		"no token: a bare challenge": {request("GET", "/api/me", ""), 401, decision.CodeUnauthenticated, jwt.ReasonMissing, `Bearer realm="tollgate"`},
		"an expired token names the class": {request("GET", "/api/me", mint(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() })),
			401, decision.CodeUnauthenticated, jwt.ReasonExpired, invalid + `"token expired"`},
		"a bad signature names the class": {request("GET", "/api/me", valid[:len(valid)-2]), 401, decision.CodeUnauthenticated, jwt.ReasonBadSignature, invalid + `"bad signature"`},
		"a wrong audience names the class": {request("GET", "/api/me", mint(func(c map[string]any) { c["aud"] = "other" })),
			401, decision.CodeUnauthenticated, jwt.ReasonBadAudience, invalid + `"wrong audience"`},
		"a token without exp is missing_exp": {request("GET", "/api/me", mint(func(c map[string]any) { delete(c, "exp") })),
			401, decision.CodeUnauthenticated, jwt.ReasonMissingExp, invalid + `"token has no expiry"`},
		"garbage is malformed":              {request("GET", "/api/me", "a.b.c"), 401, decision.CodeUnauthenticated, jwt.ReasonMalformed, invalid + `"malformed token"`},
		"keys that cannot be had are a 503": {request("GET", "/remote/x", valid), 503, decision.CodeUnavailable, jwt.ReasonKeysUnavailable, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), tc.req)
			if d.Allowed || d.Status != tc.status || d.Code != tc.code || d.Reason != string(tc.reason) {
				t.Fatalf("got %v %d %q %q, want %d %q %q", d.Allowed, d.Status, d.Code, d.Reason, tc.status, tc.code, tc.reason)
			}
			challenge, ok := header(d.ResponseHeaders, "www-authenticate")
			if challenge != tc.challenge || ok != (tc.challenge != "") {
				t.Errorf("www-authenticate = %q, want %q", challenge, tc.challenge)
			}
			retry, ok := header(d.ResponseHeaders, "retry-after")
			if (tc.status == 503) != ok || (ok && retry != decision.KeysRetryAfter) {
				t.Errorf("retry-after = %q, %v", retry, ok)
			}
			body := d.Body()
			if !strings.Contains(body, `"error":"`+tc.code+`"`) {
				t.Errorf("body %s", body)
			}
			if tok := strings.TrimPrefix(tc.req.Headers["authorization"], "Bearer "); tok != "" {
				for _, part := range strings.Split(tok, ".") {
					if len(part) > 8 && strings.Contains(body+challenge+d.Message, part) {
						t.Errorf("deny echoes the token")
					}
				}
			}
		})
	}
}
