package compiler_test

import (
	"slices"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestCompileListsClaimsUsed: the compiled jwt block names every claim a
// decision reads, so the verifier keeps those and no other (issue 13 §6).
func TestCompileListsClaimsUsed(t *testing.T) {
	own := pt.OwnTasksRule() // owner sub, allowIf role
	own.Limits = []v1alpha1.Limit{{Name: "per-user", Requests: 3, Period: "15m", By: "user",
		Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 5}}}}}
	p, err := compiler.Compile(pt.New(
		pt.WithJWTChange(func(j *v1alpha1.JWT) {
			j.ForwardClaims = map[string]string{"x-user-id": "sub", "x-user-email": "email"}
		}),
		pt.WithLimit(v1alpha1.Limit{Name: "per-org", Requests: 100, Period: "1h", By: "claim:org"}),
		pt.WithRule(own),
		pt.WithRule(v1alpha1.Rule{Name: "me", Path: "/me", Owner: &v1alpha1.Owner{Claim: "uid", Header: "x-uid"}}),
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"email", "org", "plan", "role", "sub", "uid"}
	if got := p.JWT.Claims; !slices.Equal(got, want) {
		t.Fatalf("Claims = %q, want %q", got, want)
	}
}
