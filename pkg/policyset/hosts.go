package policyset

import (
	"fmt"
	"slices"
	"strings"
)

// Host ownership.
//
// A host name is owned by the namespace of the oldest policy holding a
// version whose host matcher covers it: "api.example.com" is covered by
// the policies that name it and by those that name "*.example.com" or
// "*.com"; "*.b.example.com" by those that name it, "*.example.com" or
// "*.com". A policy that names a host matcher owned by another namespace
// does not serve (resolve.go): a namespace can neither take a name
// another one owns nor carve a more specific wildcard or name out of
// another's wildcard. An older name keeps its owner under a newer
// wildcard of another namespace, which owns the rest.
//
// The host names held are kept in a tree of labels from the right
// ("api.example.com" is the child "api" of "example.com"), each node with
// the policies that name it and its wildcard, by age, and the owners
// derived from them: a change to the holders of a name re-derives the
// owners of that name, and, when the owner of its wildcard changed, of the
// names below it, stopping wherever the owner passed down is unchanged.
// Nothing else is looked at: the cost of a change is the depth of its
// names plus the names whose owner it can change.

// A claim says which policy owns a host matcher and through which host as
// written: the matcher itself, or a wildcard above it.
type claim struct {
	it   *item // nil when no policy covers the matcher
	host string
}

// ns returns the owning namespace, or "".
func (c claim) ns() string {
	if c.it == nil {
		return ""
	}
	return c.it.ns
}

// same reports whether two claims say the same to a policy: the same
// owning namespace, through the same host.
func (c claim) same(o claim) bool { return c.ns() == o.ns() && c.host == o.host }

// older returns the claim of the older policy; b on a tie (the same
// policy naming a wildcard and a name under it: the wildcard, above, is
// the broader claim).
func older(a, b claim) claim {
	switch {
	case a.it == nil:
		return b
	case b.it == nil:
		return a
	case a.it.age.less(&b.it.age):
		return a
	}
	return b
}

// A hostNode is one name of the host tree.
type hostNode struct {
	name     string // "example.com"
	label    string // its first label, its key in parent.children: "example"
	parent   *hostNode
	children map[string]*hostNode // by their first label
	// exact and wild list, by age, the policies holding a version that
	// names this name and its wildcard ("*." + name).
	exact, wild []*item
	// down is the oldest claim of a wildcard that covers the names below
	// this one: this name's own wildcard, or one above it.
	down claim
	// exactOwner and wildOwner own the name and its wildcard; zero when no
	// policy names them.
	exactOwner, wildOwner claim
}

// A hostTree holds the host names that policies name, by name.
type hostTree struct {
	nodes map[string]*hostNode
}

func newHostTree() hostTree { return hostTree{nodes: make(map[string]*hostNode)} }

// splitHost returns the name of a host as written and whether it is a
// wildcard: "*.example.com" is the wildcard of "example.com".
func splitHost(h string) (name string, wild bool) {
	if name, ok := strings.CutPrefix(h, "*."); ok {
		return name, true
	}
	return h, false
}

// node returns the node of name, created with its ancestors if create.
func (t *hostTree) node(name string, create bool) *hostNode {
	if n := t.nodes[name]; n != nil || !create {
		return n
	}
	n := &hostNode{name: name, label: name}
	if label, rest, ok := strings.Cut(name, "."); ok {
		n.label = label
		n.parent = t.node(rest, true)
		if n.parent.children == nil {
			n.parent.children = make(map[string]*hostNode)
		}
		n.parent.children[label] = n
		n.down = n.parent.down
	}
	t.nodes[name] = n
	return n
}

// holders returns the list of policies naming host (as written) at n.
func (n *hostNode) holders(wild bool) *[]*item {
	if wild {
		return &n.wild
	}
	return &n.exact
}

// add records that it names host.
func (t *hostTree) add(host string, it *item) *hostNode {
	name, wild := splitHost(host)
	n := t.node(name, true)
	list := n.holders(wild)
	*list = insertByAge(*list, it)
	return n
}

// remove records that it no longer names host.
func (t *hostTree) remove(host string, it *item) *hostNode {
	name, wild := splitHost(host)
	n := t.node(name, false)
	if n == nil {
		return nil
	}
	list := n.holders(wild)
	*list = removeItem(*list, it)
	return n
}

// prune drops n and its ancestors while they hold nothing.
func (t *hostTree) prune(n *hostNode) {
	for n != nil && len(n.exact) == 0 && len(n.wild) == 0 && len(n.children) == 0 {
		delete(t.nodes, n.name)
		p := n.parent
		if p != nil {
			delete(p.children, n.label)
		}
		n = p
	}
}

// owner returns the claim that owns host (as written); zero when no
// policy names it.
func (t *hostTree) owner(host string) claim {
	name, wild := splitHost(host)
	n := t.nodes[name]
	switch {
	case n == nil:
		return claim{}
	case wild:
		return n.wildOwner
	}
	return n.exactOwner
}

// settleHostsLocked re-derives the owners at the nodes of hosts (as
// written), whose holders changed, and below them where the owner passed
// down changed (every node below when force: a holder's age changed);
// each host whose owner changed is marked for the next snapshot and its
// holders are re-decided. Then it drops the nodes left holding nothing.
func (s *Set) settleHostsLocked(hosts []string, force bool) {
	nodes := make([]*hostNode, 0, len(hosts))
	for _, h := range hosts {
		name, _ := splitHost(h)
		if n := s.hosts.nodes[name]; n != nil && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	// Names above first: a name below then sees its final owner from
	// above, and is settled again only when that owner changed.
	slices.SortFunc(nodes, func(a, b *hostNode) int {
		return strings.Count(a.name, ".") - strings.Count(b.name, ".")
	})
	for _, n := range nodes {
		s.settleNodeLocked(n, force)
	}
	for _, n := range nodes {
		s.hosts.prune(n)
	}
}

// settleNodeLocked re-derives the owners at n from its holders and the claim
// passed down from above, and settles its children when that changes for
// them.
func (s *Set) settleNodeLocked(n *hostNode, force bool) {
	var up claim
	if n.parent != nil {
		up = n.parent.down
	}
	exact := claim{}
	if len(n.exact) > 0 {
		exact = older(claim{it: n.exact[0], host: n.name}, up)
	}
	s.ownerChangedLocked(&n.exactOwner, exact, n.name, n.exact)
	down := up
	if len(n.wild) > 0 {
		down = older(claim{it: n.wild[0], host: "*." + n.name}, up)
	}
	wild := claim{}
	if len(n.wild) > 0 {
		wild = down
	}
	s.ownerChangedLocked(&n.wildOwner, wild, "*."+n.name, n.wild)
	if down == n.down && !force {
		return
	}
	n.down = down
	for _, c := range n.children {
		s.settleNodeLocked(c, force)
	}
}

// ownerChangedLocked stores the owner c of host at *owner and, when that
// changes what its holders are told, marks the host for the next
// snapshot and re-decides them.
func (s *Set) ownerChangedLocked(owner *claim, c claim, host string, holders []*item) {
	changed := !owner.same(c)
	*owner = c
	if !changed {
		return
	}
	s.pub.ownerChangedLocked(host)
	if !s.opts.CrossNamespaceHosts {
		for _, it := range holders {
			s.enqueueLocked(it)
		}
	}
}

// ownerLocked returns the namespace that owns host (as written), or "".
func (s *Set) ownerLocked(h string) string { return s.hosts.owner(h).ns() }

// hostConflictLocked says why it cannot serve a version naming host, or
// returns "".
func (s *Set) hostConflictLocked(it *item, host string) string {
	c := s.hosts.owner(host)
	if c.it == nil || c.it.ns == it.ns {
		return ""
	}
	if c.host == host {
		return fmt.Sprintf("host %s belongs to namespace %s (an older policy there names it); only policies in %s may serve it", host, c.it.ns, c.it.ns)
	}
	return fmt.Sprintf("host %s is under %s, which belongs to namespace %s (an older policy there names it); only policies in %s may serve it",
		host, c.host, c.it.ns, c.it.ns)
}

// owners returns the owner of every host named, by host as written, for
// a snapshot built anew.
func (t *hostTree) owners() map[string]string {
	out := make(map[string]string, len(t.nodes))
	for name, n := range t.nodes {
		if len(n.exact) > 0 {
			out[name] = n.exactOwner.ns()
		}
		if len(n.wild) > 0 {
			out["*."+name] = n.wildOwner.ns()
		}
	}
	return out
}
