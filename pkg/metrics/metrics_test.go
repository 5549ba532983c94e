package metrics_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/metrics"
)

func TestMetrics(t *testing.T) {
	m := metrics.New()
	m.JWKSFetch("https://a/jwks", nil)
	m.JWKSFetch("https://a/jwks", errors.New("refused"))
	m.CacheLookup(true)
	m.Decision("grpc", &decision.Decision{Allowed: true, Policy: "shop/p", Rule: "r", Reason: decision.ReasonAllowed}, time.Millisecond)
	m.Decision("http", &decision.Decision{Allowed: true, Policy: "shop/p", Rule: "r", Reason: decision.ReasonAllowed,
		DryRun: decision.DryRunDecision{Policy: "shop/dry", Rule: "d", Status: 403, Reason: decision.ReasonOwnerMismatch}}, time.Millisecond)
	m.Decision("http", &decision.Decision{Status: 401, Policy: "shop/p", Rule: "r", Reason: "expired"}, time.Millisecond)
	m.Decision("grpc", &decision.Decision{Status: 401, Policy: "shop/p", Rule: "r", Reason: string(jwt.ReasonMissing)}, time.Millisecond)
	m.Policies(3)

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
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("missing %s", want)
		}
	}
	// Only token reasons are token failures.
	if strings.Contains(out.String(), `tollgate_jwt_verification_failures_total{reason="owner_mismatch"}`) {
		t.Error("a decision reason that is not a token's counts as a token failure")
	}
}

func TestDecisionCountsEverySeriesOnceUnderConcurrency(t *testing.T) {
	m := metrics.New()
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
	d := &decision.Decision{Allowed: true, Policy: "shop/tasks-api", Rule: "own-tasks", Reason: decision.ReasonAllowed}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Decision("grpc", d, time.Millisecond)
		}
	})
}
