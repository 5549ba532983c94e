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
// no allocation however many headers the served policies forward, and a
// claim the token lacks adds none while the headers to remove fit the
// Decision's buffer.
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
	premium := f.token(t, "alice", map[string]any{"plan": "premium"})
	noPlan := f.token(t, "alice", nil)
	allocs := func(aps ...*v1alpha1.AuthPolicy) map[string]float64 {
		f.load(t, aps...)
		out := map[string]float64{}
		var d decision.Decision
		for name, req := range map[string]*decision.Request{
			"anonymous rule": request("GET", "/api/health", "", "x-user-id", "bob"),
			"default allow":  request("GET", "/elsewhere", "", "x-user-id", "bob"),
			"every claim":    request("GET", "/api/users/alice/tasks", premium, "x-user-id", "bob"),
			"a claim short":  request("GET", "/api/users/alice/tasks", noPlan, "x-user-id", "bob"),
		} {
			f.engine.DecideInto(context.Background(), req, &d) // warm the token cache
			out[name] = testing.AllocsPerRun(100, func() {
				if f.engine.DecideInto(context.Background(), req, &d); !d.Allowed {
					t.Fatalf("%s: %+v", name, d)
				}
			})
		}
		return out
	}
	one, twenty := allocs(unlimitedPolicy(f.key)), allocs(many...)
	for name, n := range one {
		if n != 0 {
			t.Errorf("%s: %v allocations with 2 forwarded headers, want 0", name, n)
		}
		// 40 other headers to remove and a claim short overflow the
		// Decision's buffer: that one case may allocate once.
		if want := map[bool]float64{true: 1}[name == "a claim short"]; twenty[name] > want {
			t.Errorf("%s: %v allocations with 42 forwarded headers, want %v at most", name, twenty[name], want)
		}
	}
}

func hostRequest(host string, r *decision.Request) *decision.Request {
	r.Host = host
	return r
}
