package decision_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// BenchmarkDecide measures the hot path as servers run it (DecideInto, one
// Decision reused): a cached token, ownership, two limits on the memory
// store, identity and rate-limit headers.
func BenchmarkDecide(b *testing.B) {
	f := newFixture(b, decision.Options{})
	own := pt.OwnTasksRule()
	own.Limits = []v1alpha1.Limit{{Name: "per-user", Requests: 1_000_000_000, Period: "1h", By: "user"}}
	f.load(b, pt.New(
		pt.WithJWTChange(func(j *v1alpha1.JWT) {
			j.JWKS = f.key.JWKS()
			j.ForwardClaims = map[string]string{"x-user-id": "sub", "x-user-plan": "plan"}
		}),
		pt.WithLimit(v1alpha1.Limit{Name: "per-ip", Requests: 1_000_000_000, Period: "1h", By: "ip"}),
		pt.WithRule(own),
	))
	token := f.token(b, "alice", map[string]any{"plan": "premium"})
	ctx := context.Background()
	req := request("GET", "/api/users/alice/tasks/42", token)
	var d decision.Decision
	f.engine.DecideInto(ctx, req, &d) // warm the token cache
	b.ReportAllocs()
	for b.Loop() {
		if f.engine.DecideInto(ctx, req, &d); !d.Allowed {
			b.Fatalf("denied: %+v", d)
		}
	}
}
