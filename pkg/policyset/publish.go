package policyset

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/decision"
)

// A publisher turns the set into snapshots in the background. A change is
// published once changes pause for about as long as a build takes, or at
// the latest ten builds' time (at most a second) after the first of them:
// a single change is published within milliseconds, while a burst (10,000
// applies at start) costs a handful of builds, not 10,000, and building
// takes at most about a tenth of the time the burst takes.
type publisher struct {
	seq       uint64    // bumped by every change to what is served or who owns hosts
	done      uint64    // seq of the last published snapshot
	since     time.Time // first change not yet collected for a snapshot
	last      time.Time // latest change
	lastBuild time.Duration
	published chan struct{} // closed and replaced at every publication
	kick      chan struct{} // a change waits for publication
	urgent    chan struct{} // a Flush waits
	retain    bool          // a key source may be unused: call Keys.Retain
	closed    bool
	// snap is the snapshot published last; dirty and dirtyHosts are the
	// policies whose served version, and the hosts whose owner, changed
	// since: the next snapshot is last updated with them.
	snap       *decision.Snapshot
	dirty      map[string]bool
	dirtyHosts map[string]bool
	// started is set by the first Flush: until a source has applied its
	// initial state, nothing is published (a partial set could allow what a
	// policy not yet applied denies), and the initial burst costs one build.
	started bool
}

// waitLocked returns how long publication should still wait for more
// changes.
func (p *publisher) waitLocked(now time.Time) time.Duration {
	quiet := min(max(p.lastBuild, time.Millisecond), 100*time.Millisecond)
	maxWait := min(max(10*p.lastBuild, 50*time.Millisecond), time.Second)
	return min(p.last.Add(quiet).Sub(now), p.since.Add(maxWait).Sub(now))
}

func (p *publisher) init() {
	p.seq = 1 // the first Flush publishes, even an empty set
	p.published = make(chan struct{})
	p.dirty = make(map[string]bool)
	p.dirtyHosts = make(map[string]bool)
	p.kick = make(chan struct{}, 1)
	p.urgent = make(chan struct{}, 1)
}

// policyChangedLocked records that the served version of policy key
// changed.
func (p *publisher) policyChangedLocked(key string) {
	p.dirty[key] = true
	p.changedLocked()
}

// ownerChangedLocked records that the owner of host h changed.
func (p *publisher) ownerChangedLocked(h string) {
	p.dirtyHosts[h] = true
	p.changedLocked()
}

func (p *publisher) changedLocked() {
	p.seq++
	p.last = time.Now()
	if p.since.IsZero() {
		p.since = p.last
	}
}

func (p *publisher) scheduleLocked() {
	if p.started && p.done != p.seq {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// errClosed is returned by Flush after Close.
var errClosed = errors.New("policyset: closed")

func (s *Set) flush(ctx context.Context) error {
	s.mu.Lock()
	s.pub.started = true
	target := s.pub.seq
	for s.pub.done < target {
		ch := s.pub.published
		s.mu.Unlock()
		select {
		case s.pub.urgent <- struct{}{}:
		default:
		}
		select {
		case s.pub.kick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return errClosed
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return nil
}

// publishLoop publishes a snapshot after changes, coalescing them.
func (s *Set) publishLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.pub.kick:
		}
		for {
			s.mu.Lock()
			if s.pub.done == s.pub.seq {
				s.mu.Unlock()
				break
			}
			wait := s.pub.waitLocked(time.Now())
			s.mu.Unlock()
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
					continue // look again: more changes may have come
				case <-s.pub.urgent:
					t.Stop()
				case <-s.ctx.Done():
					t.Stop()
					return
				}
			}
			s.publishOnce()
			break
		}
	}
}

func (s *Set) publishOnce() {
	start := time.Now()
	s.mu.Lock()
	if s.pub.done == s.pub.seq {
		s.mu.Unlock()
		return
	}
	seq := s.pub.seq
	s.pub.since = time.Time{}
	build, changed := s.collectLocked()
	if s.pub.retain && s.opts.Keys != nil {
		// Under s.mu, so that no verifier is made for a source between
		// collecting the configs and dropping the others.
		s.opts.Keys.Retain(s.configsLocked())
		s.pub.retain = false
	}
	s.mu.Unlock()

	snap := build()
	if s.opts.Publish != nil {
		s.opts.Publish(snap, changed)
	}

	s.mu.Lock()
	s.pub.snap = snap
	s.pub.done = seq
	s.pub.lastBuild = time.Since(start)
	close(s.pub.published)
	s.pub.published = make(chan struct{})
	s.pub.scheduleLocked()
	s.mu.Unlock()
}

// collectLocked takes what changed since the last snapshot and returns the
// function that builds the next one, to be called without s.mu: the last
// snapshot updated with the policies and host owners that changed, or,
// the first time or when much changed, a snapshot of the whole set.
// decision.NewSnapshot and Snapshot.Update are the one way policies become
// a snapshot. It also returns the keys of the policies whose served
// version changed (see Options.Publish).
func (s *Set) collectLocked() (build func() *decision.Snapshot, changed []string) {
	dirty, dirtyHosts := s.pub.dirty, s.pub.dirtyHosts
	s.pub.dirty, s.pub.dirtyHosts = make(map[string]bool), make(map[string]bool)
	changed = make([]string, 0, len(dirty))
	for key := range dirty {
		changed = append(changed, key)
	}
	last := s.pub.snap
	if last == nil || len(dirty)+len(dirtyHosts) > len(s.items)/4+16 {
		entries := make([]decision.Entry, 0, len(s.items))
		for _, it := range s.items {
			if it.serving != nil {
				entries = append(entries, entryOf(it.serving))
			}
		}
		var owners map[string]string
		if !s.opts.CrossNamespaceHosts {
			owners = s.hosts.owners()
		}
		return func() *decision.Snapshot { return decision.NewSnapshot(entries, owners) }, changed
	}
	var removed []string
	var added []decision.Entry
	for _, key := range changed {
		if it := s.servingLocked(key); it != nil {
			added = append(added, entryOf(it.serving))
		} else {
			removed = append(removed, key)
		}
	}
	var owners map[string]string
	if !s.opts.CrossNamespaceHosts && len(dirtyHosts) > 0 {
		owners = make(map[string]string, len(dirtyHosts))
		for h := range dirtyHosts {
			owners[h] = s.ownerLocked(h)
		}
	}
	return func() *decision.Snapshot { return last.Update(removed, added, owners) }, changed
}

// servingLocked returns the policy that serves namespace/name key: a
// file's or a Kubernetes object's (never both: the newer is a Conflict),
// or nil.
func (s *Set) servingLocked(key string) *item {
	for _, file := range []bool{true, false} {
		if it := s.items[itemID{key: key, file: file}]; it != nil && it.serving != nil {
			return it
		}
	}
	return nil
}

func entryOf(v *version) decision.Entry {
	e := decision.Entry{Policy: v.policy}
	if v.verifier != nil {
		e.Verifier = v.verifier
	}
	return e
}
