package jwt

import (
	"sort"
	"time"
)

// A KeySetState describes one remote key set (a JWKS fetched directly or
// through OIDC discovery), for metrics.
type KeySetState struct {
	// URI is the configured JWKS URI, or the issuer for discovery.
	URI       string
	Discovery bool
	// Keys is the number of keys held: 0 until a fetch succeeds, and never
	// 0 after (a failed or empty fetch keeps the keys held).
	Keys int
	// Age is the time since the last successful fetch, by the Manager's
	// clock; 0 while Keys is 0.
	Age time.Duration
}

// KeySets returns the state of every remote key set in use, ordered by
// URI. Key sets are shared by every policy that names the same URI, so
// there are as many as distinct key URLs, not policies.
func (m *Manager) KeySets() []KeySetState {
	m.mu.Lock()
	sources := make([]*remoteSource, 0, len(m.remotes))
	for _, s := range m.remotes {
		sources = append(sources, s)
	}
	m.mu.Unlock()
	now := m.now()
	out := make([]KeySetState, 0, len(sources))
	for _, s := range sources {
		st := KeySetState{URI: s.uri, Discovery: s.discovery}
		if set := s.set.Load(); set != nil {
			st.Keys = len(set.all)
			s.mu.Lock()
			if !s.lastOK.IsZero() { // else the first fetch is finishing now
				st.Age = now.Sub(s.lastOK)
			}
			s.mu.Unlock()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].URI != out[j].URI {
			return out[i].URI < out[j].URI
		}
		return !out[i].Discovery && out[j].Discovery
	})
	return out
}
