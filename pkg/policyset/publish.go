package policyset

import (
	"context"
	"errors"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/decision"
)

// maxCoalesce bounds how long a change waits for others to join its
// publication.
const maxCoalesce = 250 * time.Millisecond

// A publisher turns the set into snapshots in the background. A change
// waits twice as long as the last build took (at most maxCoalesce) for
// others to join it, so that under a burst building takes at most about a
// third of a core, and 10,000 applies cost a few builds, not 10,000.
type publisher struct {
	seq       uint64 // bumped by every change to what is served or who owns hosts
	done      uint64 // seq of the last published snapshot
	lastBuild time.Duration
	published chan struct{} // closed and replaced at every publication
	kick      chan struct{} // a change waits for publication
	urgent    chan struct{} // a Flush waits
	retain    bool          // a key source may be unused: call Keys.Retain
	closed    bool
}

func (p *publisher) init() {
	p.seq = 1 // the first Flush publishes, even an empty set
	p.published = make(chan struct{})
	p.kick = make(chan struct{}, 1)
	p.urgent = make(chan struct{}, 1)
}

func (p *publisher) changedLocked() { p.seq++ }

func (p *publisher) scheduleLocked() {
	if p.done != p.seq {
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
		s.mu.Lock()
		delay := min(max(2*s.pub.lastBuild, time.Millisecond), maxCoalesce)
		s.mu.Unlock()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.pub.urgent:
			t.Stop()
		case <-s.ctx.Done():
			t.Stop()
			return
		}
		s.publishOnce()
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
	entries, owners := s.collectLocked()
	if s.pub.retain && s.opts.Keys != nil {
		// Under s.mu, so that no verifier is made for a source between
		// collecting the configs and dropping the others.
		s.opts.Keys.Retain(s.configsLocked())
		s.pub.retain = false
	}
	s.mu.Unlock()

	snap := decision.NewSnapshot(entries, owners)
	if s.opts.Publish != nil {
		s.opts.Publish(snap)
	}

	s.mu.Lock()
	s.pub.done = seq
	s.pub.lastBuild = time.Since(start)
	close(s.pub.published)
	s.pub.published = make(chan struct{})
	s.pub.scheduleLocked()
	s.mu.Unlock()
}

// collectLocked returns what the set serves: the serving version of every
// policy, and the owner of every host named (nil with CrossNamespaceHosts).
// decision.NewSnapshot turns it into a snapshot: this pair is the one way
// policies become a snapshot.
func (s *Set) collectLocked() ([]decision.Entry, map[string]string) {
	entries := make([]decision.Entry, 0, len(s.items))
	for _, it := range s.items {
		v := it.serving
		if v == nil {
			continue
		}
		e := decision.Entry{Policy: v.policy}
		if v.verifier != nil {
			e.Verifier = v.verifier
		}
		entries = append(entries, e)
	}
	var owners map[string]string
	if !s.opts.CrossNamespaceHosts {
		owners = make(map[string]string, len(s.hosts))
		for h, list := range s.hosts {
			owners[h] = list[0].ns
		}
	}
	return entries, owners
}
