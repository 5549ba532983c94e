package decision

import (
	"context"
	"maps"
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
	// forwardedBy counts, per header of forwarded, the policies that
	// forward it.
	forwardedBy map[string]int
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

// add adds e; the prefix's list is copied, never appended to in place,
// so that an index cloned from a published snapshot leaves it intact.
func (h *hostIndex) add(e *entry) {
	if h.byPrefix == nil {
		h.byPrefix = make(map[string][]*entry, 1)
	}
	old := h.byPrefix[e.policy.PathPrefix]
	// Enforcing entries before dry-run ones; otherwise in given order.
	i := len(old)
	if !e.policy.DryRun {
		for i > 0 && old[i-1].policy.DryRun {
			i--
		}
	}
	list := make([]*entry, 0, len(old)+1)
	list = append(append(append(list, old[:i]...), e), old[i:]...)
	h.byPrefix[e.policy.PathPrefix] = list
}

// remove removes e, copying the prefix's list.
func (h *hostIndex) remove(e *entry) {
	old := h.byPrefix[e.policy.PathPrefix]
	i := slices.Index(old, e)
	if i < 0 {
		return
	}
	if len(old) == 1 {
		delete(h.byPrefix, e.policy.PathPrefix)
		return
	}
	h.byPrefix[e.policy.PathPrefix] = slices.Concat(old[:i], old[i+1:])
}

func (h *hostIndex) clone() *hostIndex { return &hostIndex{byPrefix: maps.Clone(h.byPrefix)} }

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
		exact:       make(map[string]*hostIndex),
		wildcard:    make(map[string]*hostIndex),
		byKey:       make(map[string]*entry, len(entries)),
		policies:    make([]*policy.Policy, 0, len(entries)),
		forwardedBy: make(map[string]int),
	}
	if owners != nil {
		s.exactOwner = make(map[string]string, len(owners))
		s.wildOwner = make(map[string]string)
		s.setOwners(owners)
	}
	fresh := func(m map[string]*hostIndex, name string) *hostIndex {
		hi := m[name]
		if hi == nil {
			hi = &hostIndex{}
			m[name] = hi
		}
		return hi
	}
	for _, in := range entries {
		if _, dup := s.byKey[in.Policy.Key()]; !dup {
			s.policies = append(s.policies, s.addEntry(in, fresh))
		}
	}
	s.indexForwarded()
	return s
}

// setOwners records the owner of each host of owners; "" means none.
func (s *Snapshot) setOwners(owners map[string]string) {
	for h, ns := range owners {
		m := s.exactOwner
		name, wild := strings.CutPrefix(h, "*")
		if wild {
			m = s.wildOwner
		}
		if ns == "" {
			delete(m, name)
		} else {
			m[name] = ns
		}
	}
}

// addEntry indexes one entry, with index returning the host index to add
// to, and returns its policy.
func (s *Snapshot) addEntry(in Entry, index func(m map[string]*hostIndex, name string) *hostIndex) *policy.Policy {
	p := in.Policy
	e := &entry{policy: p, verifier: in.Verifier}
	s.byKey[p.Key()] = e
	if p.DryRun {
		s.dryRuns++
	}
	if len(p.Hosts) == 0 {
		s.anyHost.add(e)
	}
	for _, h := range p.Hosts {
		if h.Wildcard {
			index(s.wildcard, h.Name).add(e)
		} else {
			index(s.exact, h.Name).add(e)
		}
	}
	if p.JWT != nil {
		for _, fc := range p.JWT.ForwardClaims {
			s.forwardedBy[fc.Header]++
		}
	}
	return p
}

// Update returns a snapshot serving what s serves, without the policies of
// the removed keys and with added (an added policy replaces one of the
// same key), and with the owners changed as owners says ("" for a host no
// longer owned; ignored when ownership is off). s is not changed: the new
// snapshot shares every index the change does not touch, so an update
// costs copies of the top-level maps and work in proportion to the change,
// not a rebuild.
func (s *Snapshot) Update(removed []string, added []Entry, owners map[string]string) *Snapshot {
	n := &Snapshot{
		exact:       maps.Clone(s.exact),
		wildcard:    maps.Clone(s.wildcard),
		anyHost:     s.anyHost,
		exactOwner:  s.exactOwner,
		wildOwner:   s.wildOwner,
		byKey:       maps.Clone(s.byKey),
		dryRuns:     s.dryRuns,
		forwarded:   s.forwarded,
		forwardedBy: maps.Clone(s.forwardedBy),
	}
	if len(owners) > 0 && s.exactOwner != nil {
		n.exactOwner, n.wildOwner = maps.Clone(s.exactOwner), maps.Clone(s.wildOwner)
		n.setOwners(owners)
	}
	cloned := make(map[*hostIndex]bool)
	anyCloned := false
	index := func(m map[string]*hostIndex, name string) *hostIndex {
		hi := m[name]
		switch {
		case hi == nil:
			hi = &hostIndex{}
		case !cloned[hi]:
			hi = hi.clone()
		default:
			return hi
		}
		cloned[hi] = true
		m[name] = hi
		return hi
	}
	touchAny := func() {
		if !anyCloned {
			n.anyHost = *s.anyHost.clone()
			anyCloned = true
		}
	}
	gone := make(map[string]bool, len(removed)+len(added))
	drop := func(key string) {
		e := n.byKey[key]
		if e == nil {
			return
		}
		gone[key] = true
		delete(n.byKey, key)
		p := e.policy
		if p.DryRun {
			n.dryRuns--
		}
		if len(p.Hosts) == 0 {
			touchAny()
			n.anyHost.remove(e)
		}
		for _, h := range p.Hosts {
			m := n.exact
			if h.Wildcard {
				m = n.wildcard
			}
			hi := index(m, h.Name)
			if hi.remove(e); len(hi.byPrefix) == 0 {
				delete(m, h.Name)
			}
		}
		if p.JWT != nil {
			for _, fc := range p.JWT.ForwardClaims {
				if n.forwardedBy[fc.Header]--; n.forwardedBy[fc.Header] == 0 {
					delete(n.forwardedBy, fc.Header)
				}
			}
		}
	}
	for _, key := range removed {
		drop(key)
	}
	for _, in := range added {
		drop(in.Policy.Key())
	}
	for _, in := range added {
		if len(in.Policy.Hosts) == 0 {
			touchAny()
		}
		n.addEntry(in, index)
	}
	if len(n.forwardedBy) != len(s.forwardedBy) || !sameKeys(n.forwardedBy, s.forwardedBy) {
		// Every entry's otherForwarded changes with the set of forwarded
		// headers: build anew.
		all := make([]Entry, 0, len(n.byKey))
		for _, e := range n.byKey {
			all = append(all, Entry{Policy: e.policy, Verifier: e.verifier})
		}
		var own map[string]string
		if n.exactOwner != nil {
			own = make(map[string]string, len(n.exactOwner)+len(n.wildOwner))
			for h, ns := range n.exactOwner {
				own[h] = ns
			}
			for h, ns := range n.wildOwner {
				own["*"+h] = ns
			}
		}
		return NewSnapshot(all, own)
	}
	n.policies = make([]*policy.Policy, 0, len(n.byKey))
	for _, p := range s.policies {
		if !gone[p.Key()] {
			n.policies = append(n.policies, p)
		}
	}
	for _, in := range added {
		n.policies = append(n.policies, in.Policy)
		n.otherForwardedOf(n.byKey[in.Policy.Key()])
	}
	return n
}

func sameKeys(a, b map[string]int) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

// indexForwarded computes forwarded and each entry's otherForwarded, once
// per snapshot, so that no request builds them.
func (s *Snapshot) indexForwarded() {
	for h := range s.forwardedBy {
		s.forwarded = append(s.forwarded, h)
	}
	slices.Sort(s.forwarded)
	s.forwarded = slices.Clip(s.forwarded)
	for _, e := range s.byKey {
		s.otherForwardedOf(e)
	}
}

// otherForwardedOf sets e.otherForwarded from s.forwarded.
func (s *Snapshot) otherForwardedOf(e *entry) {
	var own []string
	if e.policy.JWT != nil {
		for _, fc := range e.policy.JWT.ForwardClaims {
			own = append(own, fc.Header)
		}
	}
	e.otherForwarded = nil
	for _, h := range s.forwarded {
		if !slices.Contains(own, h) {
			e.otherForwarded = append(e.otherForwarded, h)
		}
	}
	e.otherForwarded = slices.Clip(e.otherForwarded)
}

// Policies returns the policies the snapshot serves.
func (s *Snapshot) Policies() []*policy.Policy { return s.policies }

// Policy returns the policy of key ("namespace/name"), or nil when the
// snapshot does not serve one.
func (s *Snapshot) Policy(key string) *policy.Policy {
	if e := s.byKey[key]; e != nil {
		return e.policy
	}
	return nil
}

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
