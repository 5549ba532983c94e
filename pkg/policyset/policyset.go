// Package policyset holds the policies that tollgate serves, one object at
// a time, whatever their source (AuthPolicy objects from the Kubernetes
// controller, documents from policy files): per policy, the last good
// compiled version and the latest status. A policy that fails to compile,
// conflicts with an older one, or names a host another namespace owns
// keeps serving its last good version, if it has one, and says why in its
// status; no policy ever holds back another.
//
// A change recompiles only the changed policy and re-decides only the
// policies it can affect; snapshots for the decision engine are built from
// the compiled policies by one function and published in the background,
// coalesced under bursts.
package policyset

import (
	"container/heap"
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
)

// A Status is the latest outcome for one policy: what its Ready condition
// says.
type Status struct {
	// Reason is one of v1alpha1.ReasonAccepted, ReasonInvalidSpec,
	// ReasonSecretNotFound, ReasonJWKSUnavailable, ReasonConflict.
	Reason string
	// Message says what to fix: the compiler's field paths for InvalidSpec,
	// the older policy (or the owning namespace) for Conflict, the Secret
	// or URL and the error for SecretNotFound / JWKSUnavailable.
	Message string
	// ObservedGeneration is metadata.generation of the object this status
	// is about.
	ObservedGeneration int64
	// Serving is true when some compiled version of the policy (this one or
	// its last good one) takes part in decisions.
	Serving bool
	// Err is the error behind an InvalidSpec status: a *compiler.Error (see
	// compiler.FieldErrors) or a key configuration error. Nil otherwise. It
	// takes no part in deciding whether a status changed.
	Err error
}

// Ready reports whether Reason is Accepted.
func (s Status) Ready() bool { return s.Reason == v1alpha1.ReasonAccepted }

// same reports whether two statuses say the same thing.
func (s Status) same(o Status) bool {
	return s.Reason == o.Reason && s.Message == o.Message &&
		s.ObservedGeneration == o.ObservedGeneration && s.Serving == o.Serving
}

// Keys makes token verifiers and drops key sources no policy uses. A
// *jwt.Manager satisfies it.
type Keys interface {
	Verifier(cfg jwt.Config) (*jwt.Verifier, error)
	Retain(cfgs []jwt.Config)
}

var _ Keys = (*jwt.Manager)(nil)

// Options configures a Set.
type Options struct {
	// Keys makes token verifiers and drops key sources no policy uses
	// (a *jwt.Manager satisfies it). Required when a policy has a jwt
	// block; such a policy is InvalidSpec without it.
	Keys Keys
	// Publish receives every new snapshot (the server passes it to
	// engine.Swap), with the keys ("namespace/name") of the policies whose
	// served version changed since the previous call: added, replaced, or
	// removed (a key snap does not serve): a policy is listed by the call
	// that first serves it, and by every call that serves another version
	// or none. A change that only moves host ownership lists nothing.
	// Calls never overlap. Nil publishes nowhere.
	Publish func(snap *decision.Snapshot, changed []string)
	// OnStatus is called, without locks held and from any goroutine, when
	// the status of a policy changes for any reason: its own apply, another
	// policy's change (a Conflict resolved by a delete, host ownership), or
	// asynchronously (keys became available or unavailable). Calls never
	// overlap and come in the order the statuses changed.
	OnStatus func(namespace, name string, st Status)
	// CrossNamespaceHosts turns off host ownership by namespace.
	CrossNamespaceHosts bool
	Logger              *slog.Logger
	// KeysRetry is how often a policy whose keys are unavailable is
	// checked again. Default 1s.
	KeysRetry time.Duration
}

// A Set is the set of policies served. It is safe for concurrent use.
// Create one with New and stop it with Close.
type Set struct {
	opts Options
	log  *slog.Logger

	ctx    context.Context // cancelled by Close; parent of key watchers
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex // mu guards every field below
	// items holds every policy applied and not deleted.
	items map[itemID]*item
	// slots lists, by age, the policies holding a version that uses a
	// slot (host matcher, pathPrefix, mode): at most one of them serves it.
	slots map[slot][]*item
	// hosts holds the host names that policies name, with their owners
	// (hosts.go).
	hosts hostTree
	// sources are the key sources of held versions, by sourceID.
	sources map[string]*keySource
	// verifiers are the verifiers of held versions, by configKey.
	verifiers map[string]*sharedVerifier
	queue     itemQueue // policies to re-decide, oldest first
	arrivals  uint64    // Kubernetes objects first seen, for age.seen
	events    []event   // status changes not yet delivered
	// delivering is true while a goroutine delivers events.
	delivering bool
	pub        publisher
}

// event is a status change to deliver through OnStatus.
type event struct {
	ns, name string
	st       Status
}

// New returns an empty Set. It publishes nothing until the first Flush.
func New(opts Options) *Set {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeysRetry <= 0 {
		opts.KeysRetry = time.Second
	}
	s := &Set{
		opts:      opts,
		log:       opts.Logger,
		items:     make(map[itemID]*item),
		slots:     make(map[slot][]*item),
		hosts:     newHostTree(),
		sources:   make(map[string]*keySource),
		verifiers: make(map[string]*sharedVerifier),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.pub.init()
	s.wg.Add(1)
	go s.publishLoop()
	return s
}

// Close stops background work (key watchers, pending publications) and
// waits for it. The Set must not be used afterwards.
func (s *Set) Close() {
	s.mu.Lock()
	s.pub.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// An Origin says where a policy came from. The zero Origin is a Kubernetes
// object, whose age is its creationTimestamp. Policies from files are
// older than every Kubernetes object and are ordered among themselves by
// file order: Root (the index of the configured path the file was found
// under), then File, then Doc (the document's index in its file).
//
// A policy file and a Kubernetes object may both define namespace/name:
// they are two policies of the set, each with a status of its own, and
// the object, the newer, is a Conflict that names the file and does not
// serve (a snapshot, Envoy's context_extensions and metrics know a policy
// by namespace/name only).
type Origin struct {
	File string
	Root int
	Doc  int
}

// fromFile reports whether o is a policy file's.
func (o Origin) fromFile() bool { return o.File != "" }

// An itemID identifies a policy of the set: its namespace/name, and
// whether a file or a Kubernetes object defines it.
type itemID struct {
	key  string
	file bool
}

func idOf(namespace, name string, o Origin) itemID {
	return itemID{key: namespaceOf(namespace) + "/" + name, file: o.fromFile()}
}

// Apply compiles obj (when its spec changed) and makes it the policy's
// current version; a policy that fails to compile or conflicts keeps serving
// its last good version, if any. Age for conflicts and host ownership comes
// from obj.CreationTimestamp (a tie, within its second, by the order the
// Set first saw the objects; see age). Returns the
// policy's status after the change.
func (s *Set) Apply(obj *v1alpha1.AuthPolicy) Status {
	return s.ApplyFrom(obj, Origin{})
}

// ApplyFrom is Apply for a policy from origin o (file order gives the age
// of policies from files).
func (s *Set) ApplyFrom(obj *v1alpha1.AuthPolicy, o Origin) Status {
	ns, name := namespaceOf(obj.Namespace), obj.Name
	s.mu.Lock()
	a := ageOf(obj, o, ns+"/"+name)
	if !a.file {
		s.firstSeenLocked(&a, idOf(obj.Namespace, name, o), obj)
	}
	it := s.itemLocked(ns, name, a)
	it.gen = obj.Generation
	if d, ok := digestOf(&obj.Spec); !ok || d != it.spec {
		it.spec = d
		p, err := compiler.Compile(obj)
		var v *version
		if err == nil {
			v, err = s.newVersionLocked(it, p)
		}
		s.setVersionsLocked(it, v, err, it.good)
	}
	st := s.settleLocked(it)
	s.mu.Unlock()
	s.deliver()
	return st
}

// Reject records that the latest version of a policy could not be read
// (a source-level error, such as a document with an unknown field): the
// policy is InvalidSpec with err, and keeps serving its last good version,
// if any. A policy never seen before is created without a version.
func (s *Set) Reject(namespace, name string, generation int64, o Origin, err error) Status {
	ns := namespaceOf(namespace)
	s.mu.Lock()
	it := s.itemLocked(ns, name, ageOf(nil, o, ns+"/"+name))
	it.gen = generation
	it.spec = specDigest{}
	s.setVersionsLocked(it, nil, err, it.good)
	st := s.settleLocked(it)
	s.mu.Unlock()
	s.deliver()
	return st
}

// Delete removes the policy; conflicts and host ownership it held are
// re-decided, and other policies' statuses change through OnStatus. It
// removes a Kubernetes object's policy; DeleteFrom removes a file's.
func (s *Set) Delete(namespace, name string) {
	s.DeleteFrom(namespace, name, Origin{})
}

// DeleteFrom is Delete for the policy of origin o: a policy file's when
// o.File is set (whichever file), else a Kubernetes object's.
func (s *Set) DeleteFrom(namespace, name string, o Origin) {
	id := idOf(namespace, name, o)
	s.mu.Lock()
	it := s.items[id]
	if it == nil {
		s.mu.Unlock()
		return
	}
	if it.serving != nil {
		s.servingChangedLocked(it, it.serving)
		it.serving = nil
		s.pub.policyChangedLocked(it.key)
	}
	s.setVersionsLocked(it, nil, nil, nil)
	it.deleted = true
	delete(s.items, id)
	s.enqueueTwinLocked(it)
	s.processLocked()
	s.mu.Unlock()
	s.deliver()
}

// Status returns the latest status of a policy: of a Kubernetes object's
// (see StatusFrom).
func (s *Set) Status(namespace, name string) (Status, bool) {
	return s.StatusFrom(namespace, name, Origin{})
}

// StatusFrom returns the latest status of the policy of origin o: a policy
// file's when o.File is set (whichever file), else a Kubernetes object's.
func (s *Set) StatusFrom(namespace, name string, o Origin) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it := s.items[idOf(namespace, name, o)]
	if it == nil {
		return Status{}, false
	}
	return it.status, true
}

// Reasons returns how many policies have each status Reason, for metrics:
// one pass over the policies, without sorting or copying them.
func (s *Set) Reasons() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, 5)
	for _, it := range s.items {
		out[it.status.Reason]++
	}
	return out
}

// A PolicyStatus is the status of one policy, with its key.
type PolicyStatus struct {
	Namespace, Name string
	Origin          Origin
	Status
}

// Statuses returns the status of every policy, oldest first.
func (s *Set) Statuses() []PolicyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PolicyStatus, 0, len(s.items))
	list := make(itemQueue, 0, len(s.items))
	for _, it := range s.items {
		list = append(list, it)
	}
	sortItems(list)
	for _, it := range list {
		out = append(out, PolicyStatus{Namespace: it.ns, Name: it.name, Origin: it.age.origin, Status: it.status})
	}
	return out
}

// Flush returns once every change applied before the call is in a
// published snapshot (publication may be coalesced under bursts). Nothing
// is published before the first Flush: a source applies its initial state,
// then flushes.
func (s *Set) Flush(ctx context.Context) error {
	return s.flush(ctx)
}

func namespaceOf(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// firstSeenLocked sets a's tie-breakers (see age): those of the object's
// item when it holds the same object (the same creationTimestamp), else
// the next arrival and whether obj's stored status is Conflict.
func (s *Set) firstSeenLocked(a *age, id itemID, obj *v1alpha1.AuthPolicy) {
	if it := s.items[id]; it != nil && it.age.created == a.created && it.age.seen != 0 {
		a.conflicted, a.seen = it.age.conflicted, it.age.seen
		return
	}
	s.arrivals++
	a.seen = s.arrivals
	c := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
	a.conflicted = c != nil && c.Reason == v1alpha1.ReasonConflict
}

// itemLocked returns the item for ns/name from the source of age a,
// created if needed, with age a.
func (s *Set) itemLocked(ns, name string, a age) *item {
	key := ns + "/" + name
	id := itemID{key: key, file: a.file}
	it := s.items[id]
	if it == nil {
		it = &item{key: key, ns: ns, name: name, age: a, index: -1}
		s.items[id] = it
		s.enqueueTwinLocked(it)
		return it
	}
	if it.age != a {
		// A new age moves the policy in every ordering it takes part in.
		for _, sl := range heldSlots(it) {
			for _, other := range s.slots[sl] {
				s.enqueueLocked(other)
			}
		}
		s.reholdLocked(it, it.cur, it.good, a)
		s.enqueueLocked(it)
	}
	return it
}

// twinLocked returns the policy of the other source (file or Kubernetes
// object) with the same namespace/name as it, or nil.
func (s *Set) twinLocked(it *item) *item {
	return s.items[itemID{key: it.key, file: !it.age.file}]
}

// enqueueTwinLocked re-decides the twin of it, which it (created or
// deleted) may block or unblock.
func (s *Set) enqueueTwinLocked(it *item) {
	if twin := s.twinLocked(it); twin != nil {
		s.enqueueLocked(twin)
	}
}

// settleLocked re-decides it and whatever its change affects, and returns
// its status.
func (s *Set) settleLocked(it *item) Status {
	s.enqueueLocked(it)
	s.processLocked()
	return it.status
}

// processLocked re-decides queued policies, oldest first, until none is
// left, then schedules a publication if what is served changed.
func (s *Set) processLocked() {
	for s.queue.Len() > 0 {
		it := heap.Pop(&s.queue).(*item)
		if it.deleted {
			continue
		}
		s.resolveLocked(it)
	}
	s.pub.scheduleLocked()
}

// emitLocked queues a status change for delivery.
func (s *Set) emitLocked(it *item) {
	if s.opts.OnStatus != nil {
		s.events = append(s.events, event{ns: it.ns, name: it.name, st: it.status})
	}
}

// deliver calls OnStatus for queued events, in order, from one goroutine
// at a time and without s.mu held. A goroutine that finds another already
// delivering leaves its events to it, so OnStatus may call into the Set.
func (s *Set) deliver() {
	if s.opts.OnStatus == nil {
		return
	}
	s.mu.Lock()
	if s.delivering {
		s.mu.Unlock()
		return
	}
	s.delivering = true
	for len(s.events) > 0 {
		evs := s.events
		s.events = nil
		s.mu.Unlock()
		for _, ev := range evs {
			s.opts.OnStatus(ev.ns, ev.name, ev.st)
		}
		s.mu.Lock()
	}
	s.delivering = false
	s.mu.Unlock()
}
