// Package cowmap provides a map for the hot path whose keys change rarely
// (metric label sets, log reasons): reads are a lock-free load of an
// immutable map, and every change copies it.
package cowmap

import (
	"maps"
	"sync"
	"sync/atomic"
)

// A Map maps keys to values created once per key. The zero Map is empty
// and ready to use; it must not be copied after first use.
//
// Get on an existing key takes no lock and does not allocate, which
// sync.Map's Load does for a string key (the conversion to any) and a
// mutex-guarded map would not do without every core contending for the
// lock. A change (a new key, an Edit) copies the map: keep a Map small,
// or change it in batches.
type Map[K comparable, V any] struct {
	// mu serializes writers of m.
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

// Load returns the value of k and whether k is in the map.
func (m *Map[K, V]) Load(k K) (V, bool) {
	if p := m.m.Load(); p != nil {
		v, ok := (*p)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// Get returns the value of k, created by create(k) when k is new; create
// runs at most once per key, with the writer lock held.
func (m *Map[K, V]) Get(k K, create func(K) V) V {
	if v, ok := m.Load(k); ok {
		return v
	}
	return m.add(k, func(k K) (V, bool) { return create(k), true })
}

// GetIf is Get for values that may not be wanted in the map: when k is
// new, create(k) runs with the writer lock held and returns the value and
// whether to add it. A value not added is returned all the same, and the
// next GetIf of k calls create again. Because create runs under the lock
// that Edit takes, it sees every Edit that finished before it, and an Edit
// that starts after it sees what it added.
func (m *Map[K, V]) GetIf(k K, create func(K) (v V, add bool)) V {
	if v, ok := m.Load(k); ok {
		return v
	}
	return m.add(k, create)
}

// add is Get's and GetIf's way for a key not found: under the writer
// lock, it looks again, then creates the value and adds it if create says
// so, copying the map.
func (m *Map[K, V]) add(k K, create func(K) (V, bool)) V {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.Load(k); ok {
		return v
	}
	v, add := create(k)
	if add {
		var old map[K]V
		if p := m.m.Load(); p != nil {
			old = *p
		}
		next := make(map[K]V, len(old)+1)
		maps.Copy(next, old)
		next[k] = v
		m.m.Store(&next)
	}
	return v
}

// Edit changes the map in one step: fn gets a copy of it, with the writer
// lock held, and may add, change and delete entries; the copy then
// replaces the map. An Edit costs one copy of the map however much fn
// changes.
func (m *Map[K, V]) Edit(fn func(m map[K]V)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next map[K]V
	if p := m.m.Load(); p != nil {
		next = maps.Clone(*p)
	}
	if next == nil {
		next = make(map[K]V)
	}
	fn(next)
	m.m.Store(&next)
}

// Len returns the number of keys.
func (m *Map[K, V]) Len() int {
	if p := m.m.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// Range calls fn for every key and value, in no particular order, until fn
// returns false. Keys added meanwhile may be missed.
func (m *Map[K, V]) Range(fn func(K, V) bool) {
	p := m.m.Load()
	if p == nil {
		return
	}
	for k, v := range *p {
		if !fn(k, v) {
			return
		}
	}
}
