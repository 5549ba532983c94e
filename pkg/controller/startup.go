package controller

import (
	"math"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// gone is the generation recorded for a policy found deleted: it settles
// any generation the initial list held.
const gone = math.MaxInt64

// A startup tracks the first pass of the serving reconciler: the
// controller is ready once every policy of the cache's first list has been
// applied (at its listed generation or a newer one) or found deleted.
//
// Reconciles can run before the list is taken, so until then every
// reconciled policy is remembered; the list only waits for those not
// reconciled yet. Policies are applied only by the reconciler, never from
// the list itself, so a stale list can never overwrite a newer version.
type startup struct {
	mu sync.Mutex // mu guards the fields below
	// seen holds what was reconciled before the list; nil afterwards.
	seen map[types.NamespacedName]int64
	// pending holds the listed policies not reconciled yet; nil before the
	// list.
	pending map[types.NamespacedName]int64
	done    chan struct{} // closed when pending empties
	closed  bool
}

func newStartup() *startup {
	return &startup{seen: make(map[types.NamespacedName]int64), done: make(chan struct{})}
}

// reconciled records that the reconciler applied key at generation gen (or
// found it deleted: gone).
func (s *startup) reconciled(key types.NamespacedName, gen int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
	case s.pending == nil:
		if gen > s.seen[key] {
			s.seen[key] = gen
		}
	default:
		if want, ok := s.pending[key]; ok && gen >= want {
			delete(s.pending, key)
			s.closeIfDoneLocked()
		}
	}
}

// listed records the first list of the cache, and returns a channel closed
// once each of its policies has been reconciled.
func (s *startup) listed(list map[types.NamespacedName]int64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = make(map[types.NamespacedName]int64, len(list))
	for key, gen := range list {
		if s.seen[key] < gen {
			s.pending[key] = gen
		}
	}
	s.seen = nil
	s.closeIfDoneLocked()
	return s.done
}

func (s *startup) closeIfDoneLocked() {
	if len(s.pending) == 0 && !s.closed {
		s.closed = true
		s.pending = nil
		close(s.done)
	}
}
