package metrics

import (
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// TestLateCheckOfADeletedPolicyCreatesNoSeries: a check that found its
// policy's series before the policy was deleted, and records after the
// deletion, creates no series (which nothing would ever delete).
func TestLateCheckOfADeletedPolicyCreatesNoSeries(t *testing.T) {
	m := New()
	p := policy.New("shop", "p")
	p.Rules = []policy.Rule{{Name: "a", Limits: []policy.Limit{{Name: "per-user"}}}}
	m.Policies(decision.NewSnapshot([]decision.Entry{{Policy: p}}, nil), []string{"shop/p"})
	s := m.seriesOf("shop/p")
	if s == nil {
		t.Fatal("no series for a served policy")
	}
	s.decision(decisionLabels{modeEnforce, "a", "allow", decision.ReasonAllowed}).Inc()

	m.Policies(decision.NewSnapshot(nil, nil), []string{"shop/p"})
	if m.seriesOf("shop/p") != nil {
		t.Fatal("a deleted policy still has series")
	}
	s.decision(decisionLabels{modeEnforce, "a", "deny", decision.ReasonRateLimited}).Inc()
	s.denial("per-user").Inc()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "tollgate_decisions_total", "tollgate_ratelimit_denials_total":
			if n := len(f.GetMetric()); n != 0 {
				t.Errorf("%s: %d series after the policy was deleted", f.GetName(), n)
			}
		}
	}
	if n := s.decisions.Len() + s.denials.Len(); n != 0 {
		t.Errorf("the deleted policy's cache holds %d counters", n)
	}
}
