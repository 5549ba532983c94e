package decision_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestDecideQuotaKeysOfPolicyAndRuleLimitsNeverMeet is issue 9's example:
// with keys joined by ':', a policy limit "own" (by user) and the limit
// "https" (by header) of a rule "own" shared alice's counter, so requests
// from anyone, without a token, locked alice out.
func TestDecideQuotaKeysOfPolicyAndRuleLimitsNeverMeet(t *testing.T) {
	f := newFixture(t, decision.Options{})
	f.load(t, unlimitedPolicy(f.key,
		pt.WithLimit(v1alpha1.Limit{Name: "own", Requests: 3, Period: "30m", By: "user"}),
		pt.WithRule(v1alpha1.Rule{Name: "own", Path: "/api/own", Anonymous: true,
			Limits: []v1alpha1.Limit{{Name: "https", Requests: 3, Period: "30m", By: "header:x-client"}}}),
	))
	alice := f.token(t, "alice", nil)
	ctx := context.Background()
	for range 3 {
		d := f.engine.Decide(ctx, request("GET", "/api/own", "", "x-client", "//auth.example.com|alice"))
		if !d.Allowed {
			t.Fatalf("mallory's request: %d %s", d.Status, d.Reason)
		}
	}
	if d := f.engine.Decide(ctx, request("GET", "/api/users/alice/tasks", alice)); !d.Allowed {
		t.Fatalf("alice: %d %s; another counter's requests used her quota", d.Status, d.Reason)
	}
}

// TestDecideNamesTheLimitThatDenies: a 429 carries the limit that denied
// it (the one with the longest wait when several do), for logs and
// tollgate_ratelimit_denials_total; nothing else carries one.
func TestDecideNamesTheLimitThatDenies(t *testing.T) {
	tests := map[string]struct {
		policyLimit, ruleLimit v1alpha1.Limit
		wantName, wantBy       string
	}{
		"a policy-level limit by ip": {
			policyLimit: v1alpha1.Limit{Name: "per-ip", Requests: 2, Period: "1h", By: "ip"},
			ruleLimit:   v1alpha1.Limit{Name: "per-user", Requests: 50, Period: "1h", By: "user"},
			wantName:    "per-ip", wantBy: "ip",
		},
		"a rule-level limit by claim": {
			policyLimit: v1alpha1.Limit{Name: "per-ip", Requests: 50, Period: "1h", By: "ip"},
			ruleLimit:   v1alpha1.Limit{Name: "per-org", Requests: 2, Period: "1h", By: "claim:org"},
			wantName:    "per-org", wantBy: "claim",
		},
		"both deny: the longer wait": {
			policyLimit: v1alpha1.Limit{Name: "hourly", Requests: 2, Period: "1h", By: "user+ip"},
			ruleLimit:   v1alpha1.Limit{Name: "daily", Requests: 2, Period: "24h", By: "header:x-client"},
			wantName:    "daily", wantBy: "header",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, decision.Options{})
			f.load(t, unlimitedPolicy(f.key,
				pt.WithLimit(tc.policyLimit),
				pt.WithRule(v1alpha1.Rule{Name: "limited", Path: "/api/limited", Limits: []v1alpha1.Limit{tc.ruleLimit}}),
			))
			alice := f.token(t, "alice", map[string]any{"org": "acme"})
			ctx := context.Background()
			for i := range 2 {
				if d := f.engine.Decide(ctx, request("GET", "/api/limited", alice, "x-client", "app")); !d.Allowed || d.Limit != nil {
					t.Fatalf("request %d: %d %s, limit %v", i+1, d.Status, d.Reason, d.Limit)
				}
			}
			d := f.engine.Decide(ctx, request("GET", "/api/limited", alice, "x-client", "app"))
			if d.Reason != decision.ReasonRateLimited || d.Limit == nil {
				t.Fatalf("third request: %d %s, limit %v", d.Status, d.Reason, d.Limit)
			}
			if d.Limit.Name != tc.wantName || d.Limit.By.String() != tc.wantBy {
				t.Errorf("denied by %s (by %s), want %s (by %s)", d.Limit.Name, d.Limit.By, tc.wantName, tc.wantBy)
			}
			if d := f.engine.Decide(ctx, request("GET", "/api/users/bob/tasks", alice)); d.Allowed || d.Limit != nil {
				t.Errorf("an owner mismatch: %d %s, limit %v", d.Status, d.Reason, d.Limit)
			}
		})
	}
}
