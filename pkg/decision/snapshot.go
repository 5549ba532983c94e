package decision

import (
	"context"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/token"
)

// A TokenVerifier verifies the tokens of one policy.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*token.Identity, error)
}

// An Entry is one policy a Snapshot serves, with the verifier of its
// tokens (nil when every rule is anonymous).
type Entry struct {
	Policy   *policy.Policy
	Verifier TokenVerifier
}

// A Snapshot is an immutable, compiled set of policies with their
// verifiers and selection indexes. The Engine swaps snapshots atomically.
//
// Selection costs a few map lookups per host label and path segment,
// whatever the number of policies.
type Snapshot struct {
	exact    map[string]*hostIndex // by host name
	wildcard map[string]*hostIndex // by suffix with its leading dot
	anyHost  hostIndex
	// exactOwner and wildOwner map a host name, or a wildcard's suffix with
	// its leading dot, to the namespace that owns it; both nil when hosts
	// are not owned (--cross-namespace-hosts).
	exactOwner map[string]string
	wildOwner  map[string]string
	byKey      map[string]*entry
	policies   []*policy.Policy
	// dryRuns counts the dryRun policies, which selection looks for
	// beside the enforcing one only when there are any.
	dryRuns int
	// forwarded is every header that a served policy forwards from a
	// claim, sorted, with cap == len: removed from the upstream request
	// on every allow, so that no client copy of one gets through.
	forwarded []string
}

type entry struct {
	policy   *policy.Policy
	verifier TokenVerifier // nil when every rule is anonymous
	// otherForwarded is Snapshot.forwarded without the headers this
	// policy forwards itself (cap == len).
	otherForwarded []string
}

// A hostIndex holds the entries of one host matcher by pathPrefix.
type hostIndex struct {
	byPrefix map[string][]*entry
}

func (h *hostIndex) add(e *entry) {
	if h.byPrefix == nil {
		h.byPrefix = make(map[string][]*entry, 1)
	}
	list := h.byPrefix[e.policy.PathPrefix]
	// Enforcing entries before dry-run ones; otherwise in given order.
	i := len(list)
	if !e.policy.DryRun {
		for i > 0 && list[i-1].policy.DryRun {
			i--
		}
	}
	list = append(list, nil)
	copy(list[i+1:], list[i:])
	list[i] = e
	h.byPrefix[e.policy.PathPrefix] = list
}

// lookup returns the entry with the longest pathPrefix that governs path,
// among those of namespace ns ("" for any namespace) in dryRun mode or not.
func (h *hostIndex) lookup(path, ns string, dryRun bool) *entry {
	if len(h.byPrefix) == 0 {
		return nil
	}
	var found *entry
	eachPrefix(path, func(prefix string) bool {
		for _, e := range h.byPrefix[prefix] {
			if (ns == "" || e.policy.Namespace == ns) && e.policy.DryRun == dryRun {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// eachPrefix calls fn with every pathPrefix that governs path (see
// policy.MatchPrefix), longest first, until fn returns true. path is
// normalized and starts with "/".
func eachPrefix(path string, fn func(prefix string) bool) {
	if fn(path) {
		return
	}
	for i := len(path) - 1; i > 0; i-- {
		if path[i] != '/' {
			continue
		}
		if i+1 < len(path) && fn(path[:i+1]) {
			return
		}
		if fn(path[:i]) {
			return
		}
	}
	if len(path) > 1 {
		fn("/")
	}
}

// NewSnapshot indexes entries for selection. Conflicts are the caller's
// to decide (pkg/policyset does, by age): entries that share a host
// matcher, pathPrefix and mode are all kept and the first one is
// selected. owners maps each host as written in policies to the namespace
// that owns it: a request to an owned host is decided only by that
// namespace's policies. A nil owners turns ownership off.
func NewSnapshot(entries []Entry, owners map[string]string) *Snapshot {
	s := &Snapshot{
		exact:    make(map[string]*hostIndex),
		wildcard: make(map[string]*hostIndex),
		byKey:    make(map[string]*entry, len(entries)),
		policies: make([]*policy.Policy, 0, len(entries)),
	}
	if owners != nil {
		s.exactOwner = make(map[string]string, len(owners))
		s.wildOwner = make(map[string]string)
		for h, ns := range owners {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				s.wildOwner[suffix] = ns
			} else {
				s.exactOwner[h] = ns
			}
		}
	}
	for _, in := range entries {
		p := in.Policy
		if _, dup := s.byKey[p.Key()]; dup {
			continue
		}
		e := &entry{policy: p, verifier: in.Verifier}
		s.byKey[p.Key()] = e
		s.policies = append(s.policies, p)
		if p.DryRun {
			s.dryRuns++
		}
		if len(p.Hosts) == 0 {
			s.anyHost.add(e)
		}
		for _, h := range p.Hosts {
			idx := s.exact
			if h.Wildcard {
				idx = s.wildcard
			}
			hi := idx[h.Name]
			if hi == nil {
				hi = &hostIndex{}
				idx[h.Name] = hi
			}
			hi.add(e)
		}
	}
	s.indexForwarded()
	return s
}

// indexForwarded computes forwarded and each entry's otherForwarded, once
// per snapshot, so that no request builds them.
func (s *Snapshot) indexForwarded() {
	for _, p := range s.policies {
		if p.JWT != nil {
			for _, fc := range p.JWT.ForwardClaims {
				s.forwarded = append(s.forwarded, fc.Header)
			}
		}
	}
	slices.Sort(s.forwarded)
	s.forwarded = slices.Clip(slices.Compact(s.forwarded))
	for _, e := range s.byKey {
		var own []string
		if e.policy.JWT != nil {
			for _, fc := range e.policy.JWT.ForwardClaims {
				own = append(own, fc.Header)
			}
		}
		for _, h := range s.forwarded {
			if !slices.Contains(own, h) {
				e.otherForwarded = append(e.otherForwarded, h)
			}
		}
		e.otherForwarded = slices.Clip(e.otherForwarded)
	}
}

// Policies returns the policies the snapshot serves.
func (s *Snapshot) Policies() []*policy.Policy { return s.policies }

// Len returns the number of policies served.
func (s *Snapshot) Len() int { return len(s.policies) }

// Owner returns the namespace that owns a canonical host name: the owner
// of the host itself, else of the most specific wildcard matching it. ok
// is false when the host is not owned or ownership is off.
func (s *Snapshot) Owner(host string) (ns string, ok bool) {
	if s.exactOwner == nil {
		return "", false
	}
	if ns, ok := s.exactOwner[host]; ok {
		return ns, true
	}
	if len(s.wildOwner) > 0 {
		for i := 1; i < len(host); i++ {
			if host[i] == '.' {
				if ns, ok := s.wildOwner[host[i:]]; ok {
					return ns, true
				}
			}
		}
	}
	return "", false
}

// selectPolicy finds, for a canonical host and normalized path, the
// enforcing policy that governs the request and the dryRun policy that
// would govern it if it enforced (ranking at least as high as the
// enforcing one); either may be nil. A dryRun policy never takes a request
// from an enforcing one: it is only evaluated beside it.
func (s *Snapshot) selectPolicy(host, path string) (governing, dryRun *entry) {
	owner, _ := s.Owner(host)
	governing, r := s.lookup(host, path, owner, false)
	if s.dryRuns > 0 {
		if d, dr := s.lookup(host, path, owner, true); d != nil && (governing == nil || !r.above(dr)) {
			dryRun = d
		}
	}
	return governing, dryRun
}

// A rank orders the policies that match one request: the most specific
// host (exact > wildcard, the longest suffix first > any), then the longest
// pathPrefix. The higher governs.
type rank struct{ host, suffix, prefix int }

func (r rank) above(o rank) bool {
	if r.host != o.host {
		return r.host > o.host
	}
	if r.suffix != o.suffix {
		return r.suffix > o.suffix
	}
	return r.prefix > o.prefix
}

// lookup finds the policy, in dryRun mode or not, for a canonical host and
// normalized path: most specific host, then longest pathPrefix. When the
// host is owned, only the owning namespace's policies take part.
func (s *Snapshot) lookup(host, path, owner string, dryRun bool) (*entry, rank) {
	if hi := s.exact[host]; hi != nil {
		if e := hi.lookup(path, owner, dryRun); e != nil {
			return e, rank{host: 3, prefix: len(e.policy.PathPrefix)}
		}
	}
	if len(s.wildcard) > 0 {
		// Longest suffix first; a wildcard needs at least one label
		// before its suffix.
		for i := 1; i < len(host); i++ {
			if host[i] != '.' {
				continue
			}
			if hi := s.wildcard[host[i:]]; hi != nil {
				if e := hi.lookup(path, owner, dryRun); e != nil {
					return e, rank{host: 2, suffix: len(host) - i, prefix: len(e.policy.PathPrefix)}
				}
			}
		}
	}
	if e := s.anyHost.lookup(path, owner, dryRun); e != nil {
		return e, rank{host: 1, prefix: len(e.policy.PathPrefix)}
	}
	return nil, rank{}
}
