package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/internal/cowmap"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// Mode label values of tollgate_decisions_total.
const (
	modeEnforce = "enforce"
	modeDryRun  = "dryRun"
)

// policyVecs are the vectors that hold per-policy series.
type policyVecs struct {
	decisions *prometheus.CounterVec // mode, policy, rule, result, reason
	denials   *prometheus.CounterVec // policy, limit
	// discard counts what belongs to no series: a check decided by a
	// snapshot that has since been replaced, for a policy, rule or limit
	// that the serving one no longer has.
	discard prometheus.Counter
}

// policySeries holds the series of one policy (tollgate_decisions_total,
// tollgate_ratelimit_denials_total) and resolves label sets to their
// counters without a lock: WithLabelValues hashes the label values and
// takes the vector's read lock on every call, which every core then
// contends for. Keeping them per policy lets a policy change touch its own
// series and nothing else.
type policySeries struct {
	vecs   *policyVecs
	policy string
	// live is what the policy's served version has, nil for the series of
	// checks no policy governed (policy=""). A series is created only when
	// live has its mode, rule and limit, so a check decided by an older
	// snapshot cannot bring back a series that has been deleted: live is
	// stored before the maps are pruned, and a series is created under the
	// lock of the map that prunes it.
	live      atomic.Pointer[liveLabels]
	decisions cowmap.Map[decisionLabels, prometheus.Counter]
	denials   cowmap.Map[string, prometheus.Counter] // by limit name
}

// decisionLabels are the labels of one tollgate_decisions_total series,
// but the policy.
type decisionLabels struct {
	mode, rule, result, reason string
}

// liveLabels are the label values that series of one policy may have.
type liveLabels struct {
	mode   string          // "" when the policy is not served: nothing is live
	rules  map[string]bool // rule names, and "" (no rule matched)
	limits map[string]bool // names of policy and rule limits
}

// liveLabelsOf returns the label values of p's series.
func liveLabelsOf(p *policy.Policy) *liveLabels {
	l := &liveLabels{mode: modeEnforce, rules: map[string]bool{"": true}, limits: make(map[string]bool)}
	if p.DryRun {
		l.mode = modeDryRun
	}
	for _, lim := range p.Limits {
		l.limits[lim.Name] = true
	}
	for _, r := range p.Rules {
		l.rules[r.Name] = true
		for _, lim := range r.Limits {
			l.limits[lim.Name] = true
		}
	}
	return l
}

// notServed is the liveLabels of a policy that is no longer served.
var notServed = &liveLabels{}

func (l *liveLabels) hasDecision(k decisionLabels) bool {
	return l == nil || k.mode == l.mode && l.rules[k.rule]
}

func (l *liveLabels) hasLimit(name string) bool { return l == nil || l.limits[name] }

// decision returns the counter of k.
func (s *policySeries) decision(k decisionLabels) prometheus.Counter {
	return s.decisions.GetIf(k, s.newDecision)
}

func (s *policySeries) newDecision(k decisionLabels) (prometheus.Counter, bool) {
	if !s.live.Load().hasDecision(k) {
		return s.vecs.discard, false
	}
	return s.vecs.decisions.WithLabelValues(k.mode, s.policy, k.rule, k.result, k.reason), true
}

// denial returns the counter of limit.
func (s *policySeries) denial(limit string) prometheus.Counter {
	return s.denials.GetIf(limit, s.newDenial)
}

func (s *policySeries) newDenial(limit string) (prometheus.Counter, bool) {
	if !s.live.Load().hasLimit(limit) {
		return s.vecs.discard, false
	}
	return s.vecs.denials.WithLabelValues(s.policy, limit), true
}

// serve makes live the labels the policy's series may have, and deletes
// the series that it no longer may. It costs the policy's own series.
func (s *policySeries) serve(live *liveLabels) {
	s.live.Store(live)
	s.decisions.Edit(func(m map[decisionLabels]prometheus.Counter) {
		for k := range m {
			if !live.hasDecision(k) {
				delete(m, k)
				s.vecs.decisions.DeleteLabelValues(k.mode, s.policy, k.rule, k.result, k.reason)
			}
		}
	})
	s.denials.Edit(func(m map[string]prometheus.Counter) {
		for limit := range m {
			if !live.hasLimit(limit) {
				delete(m, limit)
				s.vecs.denials.DeleteLabelValues(s.policy, limit)
			}
		}
	})
}

// seriesOf returns the series of policy key ("" for checks no policy
// governed), or nil when the policy is not served.
func (m *Metrics) seriesOf(key string) *policySeries {
	if key == "" {
		return m.unmatched
	}
	s, _ := m.series.Load(key)
	return s
}

// Policies records a new serving snapshot, before it serves: its size,
// and the series of the policies changed since the previous one (as
// policyset.Options.Publish lists them). The series of a policy no longer
// served are deleted, and so are those of rules and limits its served
// version no longer has, or of the mode it no longer runs in; a policy
// served again counts from zero. The cost is that of the changed
// policies' series plus one copy of the index of served policies.
//
// A check decided by an older snapshot and recorded after the call is not
// counted when its policy, rule or limit is gone, and checks of a policy
// not yet recorded here are not counted: call Policies before the engine
// serves the snapshot.
func (m *Metrics) Policies(snap *decision.Snapshot, changed []string) {
	m.policiesLoaded.Set(float64(snap.Len()))
	m.policiesReady.Set(1)
	if len(changed) == 0 {
		return
	}
	type change struct {
		s    *policySeries
		live *liveLabels
	}
	changes := make([]change, 0, len(changed))
	m.series.Edit(func(all map[string]*policySeries) {
		for _, key := range changed {
			s := all[key]
			p := snap.Policy(key)
			switch {
			case p == nil && s != nil:
				delete(all, key)
				changes = append(changes, change{s, notServed})
			case p != nil && s == nil:
				// New: nothing to prune, and live before anyone sees it.
				s = &policySeries{vecs: &m.vecs, policy: key}
				s.live.Store(liveLabelsOf(p))
				all[key] = s
			case p != nil:
				changes = append(changes, change{s, liveLabelsOf(p)})
			}
		}
	})
	for _, c := range changes {
		c.s.serve(c.live)
	}
}
