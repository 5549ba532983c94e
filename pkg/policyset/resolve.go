package policyset

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
)

// How a policy is decided.
//
// Every policy holds up to two versions: cur, compiled from its latest
// spec, and good, the last version that was Accepted and served. Policies
// are decided oldest first: each serves the first of its candidate
// versions (cur, else good) that no older policy blocks. A version is
// blocked when an older policy serves one of its slots (same host matcher,
// pathPrefix and mode), when it names a host matcher owned by another
// namespace (hosts.go: the namespace of the oldest policy holding a
// version whose matcher covers it), or when an older policy of the other
// source (file or Kubernetes object) has its namespace/name. Because a
// policy depends only on older ones, a change re-decides only the
// policies it can affect: the changed one, the newer policies contending
// for the slots whose server changed, and the holders of host matchers
// whose owner changed.

// setVersionsLocked replaces the versions an item holds and releases the
// ones it no longer holds.
func (s *Set) setVersionsLocked(it *item, cur *version, err error, good *version) {
	oldCur, oldGood := it.cur, it.good
	s.reholdLocked(it, cur, good, it.age)
	it.err = err
	for _, v := range []*version{oldCur, oldGood} {
		if v != nil && v != it.cur && v != it.good {
			s.releaseLocked(v)
		}
	}
	s.enqueueLocked(it)
}

// reholdLocked makes it hold versions cur and good at age a, keeping the
// slot lists in order and the host tree's owners current (re-deciding the
// holders of every host matcher whose owner changes).
func (s *Set) reholdLocked(it *item, cur, good *version, a age) {
	hosts := heldHosts(nil, it.cur, it.good)
	hosts = heldHosts(hosts, cur, good)
	aged := it.age != a
	s.unholdLocked(it)
	it.cur, it.good, it.age = cur, good, a
	s.holdLocked(it)
	s.settleHostsLocked(hosts, aged)
}

// heldHosts appends to dst the hosts named by vs that it lacks.
func heldHosts(dst []string, vs ...*version) []string {
	return appendHeld(dst, func(v *version) []string { return v.hosts }, vs...)
}

// heldSlots returns the slots of the versions it holds.
func heldSlots(it *item) []slot {
	return appendHeld(nil, func(v *version) []slot { return v.slots }, it.cur, it.good)
}

// appendHeld appends to dst the elements of field(v), for each non-nil v of
// vs, that dst lacks.
func appendHeld[T comparable](dst []T, field func(*version) []T, vs ...*version) []T {
	for _, v := range vs {
		if v == nil {
			continue
		}
		for _, x := range field(v) {
			if !slices.Contains(dst, x) {
				dst = append(dst, x)
			}
		}
	}
	return dst
}

// unholdLocked removes it from the slot and host lists of the versions it
// holds; the host tree's owners are left to settleHostsLocked.
func (s *Set) unholdLocked(it *item) {
	for _, sl := range heldSlots(it) {
		unlist(s.slots, sl, it)
	}
	for _, h := range heldHosts(nil, it.cur, it.good) {
		s.hosts.remove(h, it)
	}
}

// holdLocked adds it to the slot and host lists of the versions it holds;
// the host tree's owners are left to settleHostsLocked.
func (s *Set) holdLocked(it *item) {
	for _, sl := range heldSlots(it) {
		s.slots[sl] = insertByAge(s.slots[sl], it)
	}
	for _, h := range heldHosts(nil, it.cur, it.good) {
		s.hosts.add(h, it)
	}
}

// unlist removes it from the list of k in m, and drops an empty list.
func unlist[K comparable](m map[K][]*item, k K, it *item) {
	if list := removeItem(m[k], it); len(list) > 0 {
		m[k] = list
	} else {
		delete(m, k)
	}
}

// resolveLocked decides which version of it serves and its status.
func (s *Set) resolveLocked(it *item) {
	var serve *version
	curConflict, curTried := "", false
	for _, v := range s.candidates(it) {
		why := s.conflictLocked(it, v)
		if v == it.cur {
			curConflict, curTried = why, true
		}
		if why == "" {
			serve = v
			break
		}
	}
	if it.cur != nil && !curTried {
		curConflict = s.conflictLocked(it, it.cur)
	}
	it.conflict = curConflict

	if serve != it.serving {
		old := it.serving
		it.serving = serve
		s.servingChangedLocked(it, old)
		s.servingChangedLocked(it, serve)
		s.pub.policyChangedLocked(it.key)
	}
	if serve != nil && serve == it.cur && it.good != it.cur && keysReady(it.cur) {
		// Accepted and served: this is the last good version now.
		s.setVersionsLocked(it, it.cur, it.err, it.cur)
	}

	st := s.statusOf(it)
	changed := !st.same(it.status)
	it.status = st
	if changed {
		s.emitLocked(it)
	}
}

// candidates returns the versions it may serve, preferred first: the
// current one, unless its keys are not (yet) available and a last good
// version exists.
func (s *Set) candidates(it *item) []*version {
	switch {
	case it.cur == nil && it.good == nil:
		return nil
	case it.cur == nil:
		return []*version{it.good}
	case it.good == nil || it.good == it.cur:
		return []*version{it.cur}
	case keysReady(it.cur):
		return []*version{it.cur, it.good}
	default:
		return []*version{it.good, it.cur}
	}
}

// servingChangedLocked re-decides the newer policies contending for the
// slots of v, which it started or stopped serving.
func (s *Set) servingChangedLocked(it *item, v *version) {
	if v == nil {
		return
	}
	for _, sl := range v.slots {
		list := s.slots[sl]
		for i := len(list) - 1; i >= 0 && it.age.less(&list[i].age); i-- {
			s.enqueueLocked(list[i])
		}
	}
}

// conflictLocked says why version v of it cannot serve, or returns "".
func (s *Set) conflictLocked(it *item, v *version) string {
	if twin := s.twinLocked(it); twin != nil && twin.age.less(&it.age) {
		return fmt.Sprintf("policy %s is also defined by %s, which comes first; a namespace/name names one policy", it.key, sourcePhrase(twin))
	}
	if !s.opts.CrossNamespaceHosts {
		for _, h := range v.hosts {
			if why := s.hostConflictLocked(it, h); why != "" {
				return why
			}
		}
	}
	for _, sl := range v.slots {
		for _, other := range s.slots[sl] {
			if other == it || !other.age.less(&it.age) {
				break
			}
			if other.serving != nil && other.serving.uses(sl) {
				return fmt.Sprintf("policy %s already governs %s with pathPrefix %q%s", other.key, hostPhrase(sl.host), sl.prefix, modePhrase(sl.dryRun))
			}
		}
	}
	return ""
}

// sourcePhrase says where a policy is defined.
func sourcePhrase(it *item) string {
	if it.age.file {
		return "the policy file " + it.age.origin.File
	}
	return "an AuthPolicy object"
}

func hostPhrase(h string) string {
	if h == "" {
		return "any host"
	}
	return "host " + h
}

func modePhrase(dryRun bool) string {
	if dryRun {
		return " in dryRun mode"
	}
	return ""
}

func (s *Set) statusOf(it *item) Status {
	st := Status{ObservedGeneration: it.gen, Serving: it.serving != nil}
	switch {
	case it.cur == nil:
		st.Reason, st.Message, st.Err = v1alpha1.ReasonInvalidSpec, invalidMessage(it.err), it.err
	case it.conflict != "":
		st.Reason, st.Message = v1alpha1.ReasonConflict, it.conflict
	case it.cur.src != nil && it.cur.src.state == keysFailed:
		st.Reason, st.Message = it.cur.src.reason(), it.cur.src.err.Error()
	default:
		st.Reason = v1alpha1.ReasonAccepted
	}
	if st.Reason != v1alpha1.ReasonAccepted {
		switch {
		case it.serving == nil:
			st.Message += "; the policy is not served"
		case it.serving != it.cur:
			if g := it.serving.policy.Generation; g > 0 {
				st.Message += fmt.Sprintf("; its last good version (generation %d) keeps serving", g)
			} else {
				st.Message += "; its last good version keeps serving"
			}
		}
	}
	return st
}

// invalidMessage lists the field errors of err, or its text.
func invalidMessage(err error) string {
	if err == nil {
		return "invalid"
	}
	fes := compiler.FieldErrors(err)
	if len(fes) == 0 {
		return err.Error()
	}
	msgs := make([]string, len(fes))
	for i, fe := range fes {
		msgs[i] = fe.Error()
	}
	return strings.Join(msgs, "; ")
}
