package decision_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestDecideEveryAllowRemovesForwardedHeaders checks that every allow —
// an authenticated rule, an anonymous rule, a policy without a jwt block,
// the default action, an answer beside a dryRun policy — sets or removes
// every header that any served policy forwards from a claim, so that a
// client can never spoof one.
func TestDecideEveryAllowRemovesForwardedHeaders(t *testing.T) {
	f := newFixture(t, decision.Options{DefaultAllow: true})
	f.load(t,
		unlimitedPolicy(f.key, pt.WithHosts("api.example.com")),
		pt.New(pt.WithName("billing", "invoices"), pt.WithHosts("billing.example.com"),
			pt.WithJWTChange(func(j *v1alpha1.JWT) {
				j.JWKS = f.key.JWKS()
				j.ForwardClaims = map[string]string{"x-billing-account": "account"}
			}),
			pt.WithRule(v1alpha1.Rule{Name: "any", Path: "/**"})),
		pt.New(pt.WithName("shop", "public"), pt.WithJWT(nil), pt.WithPathPrefix("/public"),
			pt.WithRule(v1alpha1.Rule{Name: "all", Anonymous: true})),
		pt.New(pt.WithName("shop", "shadow"), pt.WithMode(v1alpha1.ModeDryRun), pt.WithHosts("api.example.com"), pt.WithPathPrefix("/api/users"),
			pt.WithJWTChange(func(j *v1alpha1.JWT) {
				j.JWKS = f.key.JWKS()
				j.ForwardClaims = map[string]string{"x-shadow-role": "role"}
			}),
			pt.WithRule(v1alpha1.Rule{Name: "all", Path: "/**"})),
	)
	forwarded := []string{"x-billing-account", "x-shadow-role", "x-user-id", "x-user-plan"}
	alice := f.token(t, "alice", nil)
	spoofed := []string{"x-user-id", "bob", "x-user-plan", "premium", "x-billing-account", "acme", "x-shadow-role", "admin"}
	tests := map[string]struct {
		req *decision.Request
		set []string
	}{
		"an authenticated rule":            {request("GET", "/api/users/alice/tasks", alice, spoofed...), []string{"x-user-id"}},
		"an anonymous rule":                {request("GET", "/api/health", "", spoofed...), nil},
		"a policy without a jwt block":     {request("GET", "/public/x", "", spoofed...), nil},
		"the default action":               {request("GET", "/elsewhere", "", spoofed...), nil},
		"another policy's host":            {hostRequest("billing.example.com", request("GET", "/x", f.token(t, "alice", map[string]any{"account": "7"}), spoofed...)), []string{"x-billing-account"}},
		"an allow beside a dryRun policy":  {request("GET", "/api/users/alice/tasks/1", alice, spoofed...), []string{"x-user-id"}},
		"an anonymous allow with no token": {hostRequest("other.example.com", request("GET", "/public", "", spoofed...)), nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), tc.req)
			if !d.Allowed {
				t.Fatalf("denied: %d %s", d.Status, d.Reason)
			}
			var set []string
			for _, h := range d.UpstreamHeaders {
				set = append(set, h.Name)
				if v := tc.req.Headers[h.Name]; v != "" && v == h.Value {
					t.Errorf("%s: the client's value %q is forwarded", h.Name, v)
				}
			}
			if !slices.Equal(set, tc.set) {
				t.Errorf("set %v, want %v", set, tc.set)
			}
			for _, h := range forwarded {
				if slices.Contains(set, h) == slices.Contains(d.RemoveHeaders, h) {
					t.Errorf("%s: set %v, removed %v; want exactly one", h, set, d.RemoveHeaders)
				}
			}
		})
	}
}

// TestDecideForwardedHeadersCostNothingPerRequest checks that the headers
// to remove come from the snapshot, not from each request: an allow costs
// the same allocations however many headers the served policies forward.
func TestDecideForwardedHeadersCostNothingPerRequest(t *testing.T) {
	f := newFixture(t, decision.Options{DefaultAllow: true})
	many := []*v1alpha1.AuthPolicy{unlimitedPolicy(f.key)}
	for i := range 20 {
		many = append(many, pt.New(pt.WithName("other", fmt.Sprintf("p%d", i)), pt.WithHosts(fmt.Sprintf("h%d.example.com", i)),
			pt.WithJWTChange(func(j *v1alpha1.JWT) {
				j.JWKS = f.key.JWKS()
				j.ForwardClaims = map[string]string{fmt.Sprintf("x-a-%d", i): "sub", fmt.Sprintf("x-b-%d", i): "email"}
			}),
			pt.WithRule(v1alpha1.Rule{Name: "all", Path: "/**"})))
	}
	alice := f.token(t, "alice", nil)
	allocs := func(aps ...*v1alpha1.AuthPolicy) map[string]float64 {
		f.load(t, aps...)
		out := map[string]float64{}
		for _, req := range []*decision.Request{
			request("GET", "/api/health", "", "x-user-id", "bob"),
			request("GET", "/elsewhere", "", "x-user-id", "bob"),
			request("GET", "/api/users/alice/tasks", alice, "x-user-id", "bob"),
		} {
			f.engine.Decide(context.Background(), req) // warm the token cache
			out[req.Path] = testing.AllocsPerRun(100, func() {
				if d := f.engine.Decide(context.Background(), req); !d.Allowed {
					t.Fatalf("%s: %+v", req.Path, d)
				}
			})
		}
		return out
	}
	one, twenty := allocs(unlimitedPolicy(f.key)), allocs(many...)
	for path, n := range one {
		if twenty[path] != n {
			t.Errorf("%s: %v allocations with 2 forwarded headers, %v with 42", path, n, twenty[path])
		}
	}
	if one["/elsewhere"] != 0 {
		t.Errorf("a default allow allocates %v times, want 0", one["/elsewhere"])
	}
}

func hostRequest(host string, r *decision.Request) *decision.Request {
	r.Host = host
	return r
}
