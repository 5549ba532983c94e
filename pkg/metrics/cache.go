package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/internal/cowmap"
)

// counters resolves label sets (a comparable struct K) to their counter of
// vec without a lock: WithLabelValues hashes the label values and takes
// the vector's read lock on every call, which every core then contends
// for. Series are few (policies × rules × reasons, policies × limits) and
// are only added, as a CounterVec keeps them too.
type counters[K comparable] struct {
	vec *prometheus.CounterVec
	// values returns the label values of a K, in vec's label order.
	values func(K) []string
	m      cowmap.Map[K, prometheus.Counter]
}

// get returns the counter of k.
func (c *counters[K]) get(k K) prometheus.Counter { return c.m.Get(k, c.create) }

func (c *counters[K]) create(k K) prometheus.Counter { return c.vec.WithLabelValues(c.values(k)...) }

// decisionLabels are the labels of one tollgate_decisions_total series.
type decisionLabels struct {
	mode, policy, rule, result, reason string
}

func (l decisionLabels) values() []string {
	return []string{l.mode, l.policy, l.rule, l.result, l.reason}
}

// limitLabels are the labels of one tollgate_ratelimit_denials_total
// series.
type limitLabels struct{ policy, limit string }

func (l limitLabels) values() []string { return []string{l.policy, l.limit} }
