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
