package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// Policy states of tollgate_policies, from the Reason of each policy's
// Ready condition.
const (
	StateReady       = "ready"       // Accepted
	StateInvalid     = "invalid"     // InvalidSpec
	StateConflict    = "conflict"    // Conflict
	StateUnavailable = "unavailable" // SecretNotFound, JWKSUnavailable: keys cannot be had
)

// policyStates are the states tollgate_policies always reports, 0 when no
// policy is in one, so that alerts compare values rather than presence.
var policyStates = [...]string{StateReady, StateInvalid, StateConflict, StateUnavailable}

// stateOf maps a status reason to its state.
func stateOf(reason string) string {
	switch reason {
	case v1alpha1.ReasonAccepted:
		return StateReady
	case v1alpha1.ReasonConflict:
		return StateConflict
	case v1alpha1.ReasonSecretNotFound, v1alpha1.ReasonJWKSUnavailable:
		return StateUnavailable
	}
	return StateInvalid
}

// scrapeCollector collects, at each scrape, metrics read from their
// source then: nothing is kept or updated between scrapes, and sources
// that went away (a deleted policy, a dropped key set) leave no series.
type scrapeCollector struct {
	descs   []*prometheus.Desc
	collect func(ch chan<- prometheus.Metric)
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// gaugeDesc describes a gauge that a scrapeCollector reports.
func gaugeDesc(o prometheus.GaugeOpts, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(o.Name, o.Help, labels, nil)
}

// ObservePolicies registers tollgate_policies{state}, read from reasons
// (policyset.Set.Reasons: the number of policies per status reason) at
// each scrape.
func (m *Metrics) ObservePolicies(reasons func() map[string]int) error {
	desc := gaugeDesc(prometheus.GaugeOpts{
		Name: "tollgate_policies",
		Help: "Policies by the state of their Ready condition: ready (Accepted), invalid (InvalidSpec), conflict (Conflict), unavailable (SecretNotFound, JWKSUnavailable). Invalid and conflicting policies keep serving their last good version, if any.",
	}, "state")
	return m.register("policies", &scrapeCollector{descs: []*prometheus.Desc{desc}, collect: func(ch chan<- prometheus.Metric) {
		var n [len(policyStates)]int
		for reason, count := range reasons() {
			for i, s := range policyStates {
				if s == stateOf(reason) {
					n[i] += count
				}
			}
		}
		for i, s := range policyStates {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n[i]), s)
		}
	}})
}

// ObserveKeySets registers tollgate_jwks_keys{uri} and
// tollgate_jwks_age_seconds{uri}, read from sets (jwt.Manager.KeySets) at
// each scrape: one series per remote key URL, which every policy naming it
// shares. (Per policy, 10,000 policies of one identity provider would be
// 10,000 copies of one number, and one stale JWKS 10,000 alerts.)
func (m *Metrics) ObserveKeySets(sets func() []jwt.KeySetState) error {
	keys := gaugeDesc(prometheus.GaugeOpts{
		Name: "tollgate_jwks_keys",
		Help: "Keys held from a remote JWKS (jwksUri, or the issuer for discovery); 0 until a fetch succeeds.",
	}, "uri")
	age := gaugeDesc(prometheus.GaugeOpts{
		Name: "tollgate_jwks_age_seconds",
		Help: "Seconds since the last successful fetch of a remote JWKS; absent until one succeeds (see tollgate_jwks_keys).",
	}, "uri")
	return m.register("key sets", &scrapeCollector{descs: []*prometheus.Desc{keys, age}, collect: func(ch chan<- prometheus.Metric) {
		prev := ""
		for _, s := range sets() { // ordered by URI
			if s.URI == prev {
				continue // a discovery issuer that is also a jwksUri: one series
			}
			prev = s.URI
			ch <- prometheus.MustNewConstMetric(keys, prometheus.GaugeValue, float64(s.Keys), s.URI)
			if s.Keys > 0 {
				ch <- prometheus.MustNewConstMetric(age, prometheus.GaugeValue, s.Age.Seconds(), s.URI)
			}
		}
	}})
}

func (m *Metrics) register(what string, c prometheus.Collector) error {
	if err := m.Registry.Register(c); err != nil {
		return fmt.Errorf("metrics: register %s: %w", what, err)
	}
	return nil
}
