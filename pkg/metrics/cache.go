package metrics

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// decisionLabels are the labels of one tollgate_decisions_total series.
type decisionLabels struct {
	mode, policy, rule, result, reason string
}

// decisionCounters resolves decision labels to their counter without a
// lock: WithLabelValues hashes the label values and takes the vector's
// read lock on every call, which every core then contends for. Readers
// load an immutable map; a new series (a new policy, rule or reason) copies
// it under mu. Series are few (policies × rules × reasons) and are only
// added, as a CounterVec keeps them too.
type decisionCounters struct {
	vec *prometheus.CounterVec
	// mu serializes writers of m.
	mu sync.Mutex
	m  atomic.Pointer[map[decisionLabels]prometheus.Counter]
}

func newDecisionCounters(vec *prometheus.CounterVec) *decisionCounters {
	c := &decisionCounters{vec: vec}
	c.m.Store(&map[decisionLabels]prometheus.Counter{})
	return c
}

// get returns the counter of l.
func (c *decisionCounters) get(l decisionLabels) prometheus.Counter {
	if counter, ok := (*c.m.Load())[l]; ok {
		return counter
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if counter, ok := old[l]; ok {
		return counter
	}
	counter := c.vec.WithLabelValues(l.mode, l.policy, l.rule, l.result, l.reason)
	m := make(map[decisionLabels]prometheus.Counter, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[l] = counter
	c.m.Store(&m)
	return counter
}
