package policyset

import (
	"container/heap"
	"crypto/sha256"
	"encoding/json"
	"slices"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// An item is one policy of the set: its latest spec, the version compiled
// from it, its last good version and what it serves.
type item struct {
	key, ns, name string
	age           age
	gen           int64
	// spec digests the latest spec applied, to skip recompiling an
	// unchanged one (a digest, not a copy: a tenth of the memory of 10,000
	// policies); zero after Reject.
	spec specDigest
	// cur is compiled from spec; nil when it does not compile (err says
	// why).
	cur *version
	err error
	// good is the last version that was Accepted and served; it may be cur.
	good *version
	// serving is the version decisions use: cur or good; nil for none.
	serving *version
	// conflict says why cur cannot serve; "" when it can.
	conflict string
	status   Status
	deleted  bool
	index    int // in Set.queue; -1 when not queued
}

// A specDigest identifies a spec: the SHA-256 of its JSON form.
type specDigest [sha256.Size]byte

func digestOf(spec *v1alpha1.AuthPolicySpec) (specDigest, bool) {
	js, err := json.Marshal(spec)
	if err != nil {
		return specDigest{}, false
	}
	return sha256.Sum256(js), true
}

// A version is one compiled version of a policy.
type version struct {
	it       *item
	policy   *policy.Policy
	verifier *jwt.Verifier // nil when every rule is anonymous
	// verifierKey is the configKey of the verifier in Set.verifiers.
	verifierKey string
	src         *keySource // nil when every rule is anonymous
	slots       []slot
	hosts       []string // hosts as written: "api.example.com", "*.example.com"
}

// A slot is what two policies cannot share: a host matcher ("" for any
// host), a pathPrefix and a mode (dry-run policies are decided beside the
// enforcing one, so they only conflict among themselves).
type slot struct {
	host   string
	prefix string
	dryRun bool
}

func newVersion(it *item, p *policy.Policy) *version {
	v := &version{it: it, policy: p}
	if len(p.Hosts) == 0 {
		v.slots = []slot{{prefix: p.PathPrefix, dryRun: p.DryRun}}
	}
	for _, h := range p.Hosts {
		name := h.String()
		v.hosts = append(v.hosts, name)
		v.slots = append(v.slots, slot{host: name, prefix: p.PathPrefix, dryRun: p.DryRun})
	}
	return v
}

func (v *version) uses(sl slot) bool { return slices.Contains(v.slots, sl) }

// An age orders policies for conflicts and host ownership: older first.
type age struct {
	file    bool
	origin  Origin
	created int64 // creationTimestamp in Unix nanoseconds; 0 when unset
	// Objects created in the same second tie on created (it has whole
	// seconds). conflicted and seen break the tie, set when the Set first
	// sees the object and kept for its life: an object whose stored status
	// was already Conflict is the newer (a restart lists objects in name
	// order, and the status says how the tie was decided); then the one
	// seen first (the watch delivers objects in the order they were
	// created).
	conflicted bool
	seen       uint64
	key        string
}

func ageOf(obj *v1alpha1.AuthPolicy, o Origin, key string) age {
	if o.File != "" {
		return age{file: true, origin: o, key: key}
	}
	a := age{key: key}
	if obj != nil && !obj.CreationTimestamp.IsZero() {
		a.created = obj.CreationTimestamp.UnixNano()
	}
	return a
}

// less reports whether a is older than b. Policies from files are older
// than Kubernetes objects.
func (a *age) less(b *age) bool {
	if a.file != b.file {
		return a.file
	}
	if a.file {
		switch {
		case a.origin.Root != b.origin.Root:
			return a.origin.Root < b.origin.Root
		case a.origin.File != b.origin.File:
			return a.origin.File < b.origin.File
		case a.origin.Doc != b.origin.Doc:
			return a.origin.Doc < b.origin.Doc
		}
	} else {
		switch {
		case a.created != b.created:
			return a.created < b.created
		case a.conflicted != b.conflicted:
			return b.conflicted
		case a.seen != b.seen:
			return a.seen < b.seen
		}
	}
	return a.key < b.key
}

// itemQueue is a min-heap of items by age.
type itemQueue []*item

func (q itemQueue) Len() int           { return len(q) }
func (q itemQueue) Less(i, j int) bool { return q[i].age.less(&q[j].age) }
func (q itemQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *itemQueue) Push(x any) {
	it := x.(*item)
	it.index = len(*q)
	*q = append(*q, it)
}
func (q *itemQueue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	it.index = -1
	return it
}

func (s *Set) enqueueLocked(it *item) {
	if it.index < 0 && !it.deleted {
		heap.Push(&s.queue, it)
	}
}

func sortItems(list []*item) {
	slices.SortFunc(list, func(a, b *item) int {
		switch {
		case a.age.less(&b.age):
			return -1
		case b.age.less(&a.age):
			return 1
		}
		return 0
	})
}

// insertByAge inserts it into list, kept sorted by age.
func insertByAge(list []*item, it *item) []*item {
	i, _ := slices.BinarySearchFunc(list, it, func(a, b *item) int {
		if a.age.less(&b.age) {
			return -1
		}
		if b.age.less(&a.age) {
			return 1
		}
		return 0
	})
	return slices.Insert(list, i, it)
}

func removeItem(list []*item, it *item) []*item {
	if i := slices.Index(list, it); i >= 0 {
		return slices.Delete(list, i, i+1)
	}
	return list
}
