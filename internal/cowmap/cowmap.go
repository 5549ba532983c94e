// Package cowmap provides a map for the hot path whose keys are few and
// only ever added (metric label sets, log reasons): reads are a lock-free
// load of an immutable map, and adding a key copies it.
package cowmap

import (
	"sync"
	"sync/atomic"
)

// A Map maps keys to values created once per key. The zero Map is empty
// and ready to use; it must not be copied after first use.
//
// Get on an existing key takes no lock and does not allocate, which
// sync.Map's Load does for a string key (the conversion to any) and a
// mutex-guarded map would not do without every core contending for the
// lock.
type Map[K comparable, V any] struct {
	// mu serializes writers of m.
	mu sync.Mutex
	m  atomic.Pointer[map[K]V]
}

// Get returns the value of k, created by create(k) when k is new; create
// runs at most once per key, with the writer lock held.
func (m *Map[K, V]) Get(k K, create func(K) V) V {
	if p := m.m.Load(); p != nil {
		if v, ok := (*p)[k]; ok {
			return v
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var old map[K]V
	if p := m.m.Load(); p != nil {
		old = *p
	}
	if v, ok := old[k]; ok {
		return v
	}
	v := create(k)
	next := make(map[K]V, len(old)+1)
	for ok, ov := range old {
		next[ok] = ov
	}
	next[k] = v
	m.m.Store(&next)
	return v
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
