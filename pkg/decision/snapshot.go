package decision

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// A TokenVerifier verifies the tokens of one policy.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*jwt.Identity, error)
}

// A VerifierFunc makes the verifier of a compiled jwt block; a
// jwt.Manager's Verifier method wrapped in a closure is one.
type VerifierFunc func(cfg jwt.Config) (TokenVerifier, error)

// A Snapshot is an immutable, compiled set of policies with their
// verifiers and selection indexes. The Engine swaps snapshots atomically.
type Snapshot struct {
	exact    map[string][]*entry // by host name
	wildcard []wildcardEntry     // longest suffix first, then longest prefix
	anyHost  []*entry            // longest prefix first
	byKey    map[string]*entry
	policies []*policy.Policy
	// Conflicts lists the policies left out because an older one governs
	// the same host and prefix.
	Conflicts []policy.Conflict
}

type entry struct {
	policy   *policy.Policy
	verifier TokenVerifier // nil when every rule is anonymous
}

type wildcardEntry struct {
	suffix string
	*entry
}

// NewSnapshot indexes policies, given oldest first (the order that decides
// conflicts), and makes their verifiers. A policy whose verifier cannot be
// made is left out and its error is returned, joined with the others; the
// snapshot serves the rest.
func NewSnapshot(policies []*policy.Policy, newVerifier VerifierFunc) (*Snapshot, error) {
	s := &Snapshot{
		exact: make(map[string][]*entry),
		byKey: make(map[string]*entry, len(policies)),
	}
	s.Conflicts = policy.FindConflicts(policies)
	conflicted := make(map[*policy.Policy]bool, len(s.Conflicts))
	for _, c := range s.Conflicts {
		conflicted[c.Newer] = true
	}
	var errs []error
	for _, p := range policies {
		if conflicted[p] {
			continue
		}
		if _, dup := s.byKey[p.Key()]; dup {
			errs = append(errs, fmt.Errorf("policy %s: defined twice", p.Key()))
			continue
		}
		e := &entry{policy: p}
		if p.JWT != nil {
			v, err := newVerifier(p.JWT.Config)
			if err != nil {
				errs = append(errs, fmt.Errorf("policy %s: %w", p.Key(), err))
				continue
			}
			e.verifier = v
		}
		s.byKey[p.Key()] = e
		s.policies = append(s.policies, p)
		if len(p.Hosts) == 0 {
			s.anyHost = append(s.anyHost, e)
		}
		for _, h := range p.Hosts {
			if h.Wildcard {
				s.wildcard = append(s.wildcard, wildcardEntry{suffix: h.Name, entry: e})
			} else {
				s.exact[h.Name] = append(s.exact[h.Name], e)
			}
		}
	}
	byPrefix := func(list []*entry) {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].policy.PathPrefix) > len(list[j].policy.PathPrefix) })
	}
	for _, list := range s.exact {
		byPrefix(list)
	}
	byPrefix(s.anyHost)
	sort.SliceStable(s.wildcard, func(i, j int) bool {
		a, b := s.wildcard[i], s.wildcard[j]
		if len(a.suffix) != len(b.suffix) {
			return len(a.suffix) > len(b.suffix)
		}
		return len(a.policy.PathPrefix) > len(b.policy.PathPrefix)
	})
	return s, errors.Join(errs...)
}

// Policies returns the policies the snapshot serves.
func (s *Snapshot) Policies() []*policy.Policy { return s.policies }

// Len returns the number of policies served.
func (s *Snapshot) Len() int { return len(s.policies) }

// selectPolicy finds the policy for a canonical host and normalized path:
// most specific host (exact > wildcard > any), then longest pathPrefix.
func (s *Snapshot) selectPolicy(host, path string) *entry {
	for _, e := range s.exact[host] {
		if policy.MatchPrefix(e.policy.PathPrefix, path) {
			return e
		}
	}
	for i := range s.wildcard {
		w := &s.wildcard[i]
		if len(host) > len(w.suffix) && host[len(host)-len(w.suffix):] == w.suffix && policy.MatchPrefix(w.policy.PathPrefix, path) {
			return w.entry
		}
	}
	for _, e := range s.anyHost {
		if policy.MatchPrefix(e.policy.PathPrefix, path) {
			return e
		}
	}
	return nil
}
