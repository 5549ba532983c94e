package metrics_test

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/metrics"
	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/version"
)

// compiled returns a compiled policy for metrics tests, with rules by
// name and, after a colon, the names of their limits ("r:per-user,per-ip").
func compiled(key string, dryRun bool, rules ...string) *policy.Policy {
	ns, name, _ := strings.Cut(key, "/")
	p := policy.New(ns, name)
	p.DryRun = dryRun
	for _, r := range rules {
		name, limits, _ := strings.Cut(r, ":")
		rule := policy.Rule{Name: name}
		for l := range strings.SplitSeq(limits, ",") {
			if l != "" {
				rule.Limits = append(rule.Limits, policy.Limit{Name: l})
			}
		}
		p.Rules = append(p.Rules, rule)
	}
	return p
}

// publish records a snapshot serving policies, as the server does before
// serving it, with the keys of the policies changed since the last one.
func publish(m *metrics.Metrics, policies []*policy.Policy, changed ...string) {
	entries := make([]decision.Entry, 0, len(policies))
	for _, p := range policies {
		entries = append(entries, decision.Entry{Policy: p})
	}
	m.Policies(decision.NewSnapshot(entries, nil), changed)
}

func TestMetrics(t *testing.T) {
	m := metrics.New()
	publish(m, []*policy.Policy{compiled("shop/p", false, "r:per-user"), compiled("shop/q", false, "r"), compiled("shop/dry", true, "d:per-user")},
		"shop/p", "shop/q", "shop/dry")
	m.JWKSFetch("https://a/jwks", nil)
	m.JWKSFetch("https://a/jwks", errors.New("refused"))
	m.CacheLookup(true)
	m.Decision("grpc", &decision.Decision{Allowed: true, Policy: "shop/p", Rule: "r", Reason: decision.ReasonAllowed}, time.Millisecond)
	m.Decision("http", &decision.Decision{Allowed: true, Policy: "shop/p", Rule: "r", Reason: decision.ReasonAllowed,
		DryRun: decision.DryRunDecision{Policy: "shop/dry", Rule: "d", Status: 403, Reason: decision.ReasonOwnerMismatch}}, time.Millisecond)
	m.Decision("http", &decision.Decision{Status: 401, Policy: "shop/p", Rule: "r", Reason: "expired"}, time.Millisecond)
	m.Decision("grpc", &decision.Decision{Status: 401, Policy: "shop/p", Rule: "r", Reason: string(jwt.ReasonMissing)}, time.Millisecond)
	perUser := &policy.Limit{Name: "per-user", By: policy.ByUser}
	for range 2 {
		m.Decision("grpc", &decision.Decision{Status: 429, Policy: "shop/p", Rule: "r", Reason: decision.ReasonRateLimited, Limit: perUser}, time.Millisecond)
	}
	m.Decision("grpc", &decision.Decision{Allowed: true, Policy: "shop/q", Rule: "r", Reason: decision.ReasonAllowed,
		DryRun: decision.DryRunDecision{Policy: "shop/dry", Rule: "d", Status: 429, Reason: decision.ReasonRateLimited, Limit: perUser}}, time.Millisecond)
	m.InFlight(func() float64 { return 7 })
	m.CheckRefused("grpc")
	m.OpenConnections("grpc", func() float64 { return 2 })
	m.OpenConnections("http", func() float64 { return 1 })
	m.ConnectionRefused("grpc", "evicted")

	out := scrape(t, m)
	for _, want := range []string{
		`tollgate_jwks_fetches_total{result="success",uri="https://a/jwks"} 1`,
		`tollgate_jwks_fetches_total{result="error",uri="https://a/jwks"} 1`,
		`tollgate_jwt_verification_failures_total{reason="expired"} 1`,
		`tollgate_jwt_verification_failures_total{reason="missing"} 1`,
		`tollgate_jwt_verification_failures_total{reason="bad_signature"} 0`,
		`tollgate_token_cache_lookups_total{result="hit"} 1`,
		`tollgate_decisions_total{mode="enforce",policy="shop/p",reason="allowed",result="allow",rule="r"} 2`,
		`tollgate_decisions_total{mode="dryRun",policy="shop/dry",reason="owner_mismatch",result="deny",rule="d"} 1`,
		`tollgate_decisions_total{mode="enforce",policy="shop/p",reason="expired",result="deny",rule="r"} 1`,
		`tollgate_check_duration_seconds_count{transport="http"} 2`,
		`tollgate_policies_loaded 3`,
		`tollgate_policies_ready 1`,
		`tollgate_ratelimit_denials_total{limit="per-user",policy="shop/p"} 2`,
		`tollgate_build_info{commit="` + version.Get().Commit + `",goversion="` + runtime.Version() + `",version="dev"} 1`,
		`tollgate_checks_in_flight 7`,
		`tollgate_checks_refused_total{transport="grpc"} 1`,
		`tollgate_connections_open{listener="grpc"} 2`,
		`tollgate_connections_open{listener="http"} 1`,
		`tollgate_connections_refused_total{listener="grpc",reason="evicted"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s", want)
		}
	}
	if strings.Contains(out, `tollgate_ratelimit_denials_total{limit="per-user",policy="shop/dry"}`) {
		t.Error("a dryRun policy's would-be 429 counts as a denial")
	}
	// Only token reasons are token failures.
	if strings.Contains(out, `tollgate_jwt_verification_failures_total{reason="owner_mismatch"}`) {
		t.Error("a decision reason that is not a token's counts as a token failure")
	}
}

// scrape returns the registry's metrics in the text format.
func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&out, f); err != nil {
			t.Fatal(err)
		}
	}
	return out.String()
}

// TestScrapeTimeMetrics: policy states and key sets are read from their
// source at each scrape; every state is reported, 0 when empty; a key set
// or policy that went away leaves no series.
func TestScrapeTimeMetrics(t *testing.T) {
	m := metrics.New()
	reasons := map[string]int{"Accepted": 7, "InvalidSpec": 2, "SecretNotFound": 1, "JWKSUnavailable": 1}
	sets := []jwt.KeySetState{
		{URI: "https://auth.example.com/api/auth/jwks", Keys: 2, Age: 90 * time.Second},
		{URI: "https://down.example.com/jwks"},
		{URI: "https://down.example.com/jwks", Discovery: true},
	}
	if err := m.ObservePolicies(func() map[string]int { return reasons }); err != nil {
		t.Fatal(err)
	}
	if err := m.ObserveKeySets(func() []jwt.KeySetState { return sets }); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		want, absent []string
		reasons      map[string]int
		sets         []jwt.KeySetState
	}{
		{name: "first scrape", want: []string{
			`tollgate_policies{state="ready"} 7`,
			`tollgate_policies{state="invalid"} 2`,
			`tollgate_policies{state="conflict"} 0`,
			`tollgate_policies{state="unavailable"} 2`,
			`tollgate_jwks_keys{uri="https://auth.example.com/api/auth/jwks"} 2`,
			`tollgate_jwks_age_seconds{uri="https://auth.example.com/api/auth/jwks"} 90`,
			`tollgate_jwks_keys{uri="https://down.example.com/jwks"} 0`,
		}, absent: []string{`tollgate_jwks_age_seconds{uri="https://down.example.com/jwks"}`}},
		{name: "after changes", reasons: map[string]int{"Accepted": 1, "Conflict": 1},
			sets: []jwt.KeySetState{{URI: "https://auth.example.com/api/auth/jwks", Keys: 3, Age: time.Second}},
			want: []string{
				`tollgate_policies{state="ready"} 1`,
				`tollgate_policies{state="invalid"} 0`,
				`tollgate_policies{state="conflict"} 1`,
				`tollgate_jwks_keys{uri="https://auth.example.com/api/auth/jwks"} 3`,
				`tollgate_jwks_age_seconds{uri="https://auth.example.com/api/auth/jwks"} 1`,
			}, absent: []string{`https://down.example.com/jwks`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.reasons != nil {
				reasons, sets = tc.reasons, tc.sets
			}
			out := scrape(t, m)
			for _, w := range tc.want {
				if !strings.Contains(out, w+"\n") {
					t.Errorf("missing %s", w)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(out, a) {
					t.Errorf("present: %s", a)
				}
			}
		})
	}
}

func TestDecisionCountsEverySeriesOnceUnderConcurrency(t *testing.T) {
	m := metrics.New()
	publish(m, []*policy.Policy{compiled("shop/p", false, "a", "b", "c", "d")}, "shop/p")
	const goroutines, each = 8, 500
	done := make(chan struct{})
	for g := range goroutines {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				// Every goroutine creates the same new series at once.
				rule := []string{"a", "b", "c", "d"}[(g+i)%4]
				m.Decision("grpc", &decision.Decision{Allowed: true, Policy: "shop/p", Rule: rule, Reason: decision.ReasonAllowed}, time.Microsecond)
			}
		}()
	}
	for range goroutines {
		<-done
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, f := range families {
		if f.GetName() == "tollgate_decisions_total" {
			if n := len(f.GetMetric()); n != 4 {
				t.Errorf("%d series, want 4", n)
			}
			for _, s := range f.GetMetric() {
				total += s.GetCounter().GetValue()
			}
		}
	}
	if total != goroutines*each {
		t.Fatalf("counted %v decisions, want %d", total, goroutines*each)
	}
}

func BenchmarkDecision(b *testing.B) {
	m := metrics.New()
	publish(m, []*policy.Policy{compiled("shop/tasks-api", false, "own-tasks")}, "shop/tasks-api")
	d := &decision.Decision{Allowed: true, Policy: "shop/tasks-api", Rule: "own-tasks", Reason: decision.ReasonAllowed}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Decision("grpc", d, time.Millisecond)
		}
	})
}

// TestSeriesFollowServedPolicies: the series of a policy, rule or limit
// that is no longer served are deleted, checks decided by an older
// snapshot do not bring them back, other policies' series stay, and a
// policy served again counts from zero.
func TestSeriesFollowServedPolicies(t *testing.T) {
	m := metrics.New()
	allow := func(p, rule string) *decision.Decision {
		return &decision.Decision{Allowed: true, Status: 200, Policy: p, Rule: rule, Reason: decision.ReasonAllowed}
	}
	limited := func(p, rule, limit string) *decision.Decision {
		return &decision.Decision{Status: 429, Policy: p, Rule: rule, Reason: decision.ReasonRateLimited, Limit: &policy.Limit{Name: limit}}
	}
	dryAllow := func(p, rule string) *decision.Decision {
		return &decision.Decision{Status: 403, Reason: decision.ReasonNoPolicy,
			DryRun: decision.DryRunDecision{Policy: p, Rule: rule, Status: 200, Reason: decision.ReasonAllowed}}
	}
	series := func(mode, p, rule, result, reason string) string {
		return `tollgate_decisions_total{mode="` + mode + `",policy="` + p + `",reason="` + reason + `",result="` + result + `",rule="` + rule + `"}`
	}
	denials := func(p, limit string) string {
		return `tollgate_ratelimit_denials_total{limit="` + limit + `",policy="` + p + `"}`
	}
	noPolicy := series("enforce", "", "", "deny", decision.ReasonNoPolicy)
	p := func(rules ...string) *policy.Policy { return compiled("shop/p", false, rules...) }
	q := compiled("shop/q", false, "a")
	steps := []struct {
		name      string
		serve     []*policy.Policy
		changed   []string
		decisions []*decision.Decision
		want      map[string]int // series: value
		absent    []string
	}{
		{
			name: "served policies count", serve: []*policy.Policy{p("a:per-user", "b"), q}, changed: []string{"shop/p", "shop/q"},
			decisions: []*decision.Decision{allow("shop/p", "a"), allow("shop/p", "b"), allow("shop/q", "a"),
				limited("shop/p", "a", "per-user"), {Status: 403, Reason: decision.ReasonNoPolicy}},
			want: map[string]int{series("enforce", "shop/p", "a", "allow", "allowed"): 1, series("enforce", "shop/p", "b", "allow", "allowed"): 1,
				series("enforce", "shop/q", "a", "allow", "allowed"): 1, denials("shop/p", "per-user"): 1, noPolicy: 1},
		},
		{
			name:  "a rule and a limit removed lose their series, and late checks do not bring them back",
			serve: []*policy.Policy{p("a"), q}, changed: []string{"shop/p"},
			decisions: []*decision.Decision{allow("shop/p", "b"), limited("shop/p", "a", "per-user")},
			want: map[string]int{series("enforce", "shop/p", "a", "allow", "allowed"): 1, series("enforce", "shop/q", "a", "allow", "allowed"): 1,
				series("enforce", "shop/p", "a", "deny", "rate_limited"): 2, noPolicy: 1},
			absent: []string{`policy="shop/p",reason="allowed",result="allow",rule="b"`, denials("shop/p", "per-user")},
		},
		{
			name:  "a deleted policy loses every series, and late checks do not bring them back",
			serve: []*policy.Policy{q}, changed: []string{"shop/p"},
			decisions: []*decision.Decision{allow("shop/p", "a"), limited("shop/p", "a", "per-user")},
			want:      map[string]int{series("enforce", "shop/q", "a", "allow", "allowed"): 1, noPolicy: 1},
			absent:    []string{`policy="shop/p"`},
		},
		{
			name: "a policy served again counts from zero", serve: []*policy.Policy{p("a:per-user"), q}, changed: []string{"shop/p"},
			decisions: []*decision.Decision{allow("shop/p", "a"), limited("shop/p", "a", "per-user")},
			want: map[string]int{series("enforce", "shop/p", "a", "allow", "allowed"): 1, series("enforce", "shop/p", "a", "deny", "rate_limited"): 1,
				denials("shop/p", "per-user"): 1, series("enforce", "shop/q", "a", "allow", "allowed"): 1},
		},
		{
			name: "a policy turned dryRun loses its enforce series", serve: []*policy.Policy{p("a:per-user"), compiled("shop/q", true, "a")}, changed: []string{"shop/q"},
			decisions: []*decision.Decision{dryAllow("shop/q", "a"), allow("shop/q", "a")},
			want: map[string]int{series("dryRun", "shop/q", "a", "allow", "allowed"): 1, series("enforce", "shop/p", "a", "allow", "allowed"): 1,
				noPolicy: 2},
			absent: []string{`mode="enforce",policy="shop/q"`},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			publish(m, st.serve, st.changed...)
			for _, d := range st.decisions {
				m.Decision("grpc", d, time.Millisecond)
			}
			out := scrape(t, m)
			for s, v := range st.want {
				if want := s + " " + strconv.Itoa(v) + "\n"; !strings.Contains(out, want) {
					t.Errorf("missing %s", want)
				}
			}
			for _, a := range st.absent {
				if strings.Contains(out, a) {
					t.Errorf("present: %s", a)
				}
			}
		})
	}
}
