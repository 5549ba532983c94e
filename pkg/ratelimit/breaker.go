package ratelimit

import (
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is the state of Resilient's circuit breaker.
type BreakerState int32

// The breaker states, numbered as the tollgate_quota_store_breaker_state
// gauge reports them.
const (
	// BreakerClosed: the primary store is used.
	BreakerClosed BreakerState = iota
	// BreakerHalfOpen: the cooldown is over; one probe request goes to the
	// primary store, the others are answered per OnError.
	BreakerHalfOpen
	// BreakerOpen: the primary store failed; it is not called until the
	// cooldown is over.
	BreakerOpen
)

// String returns "closed", "half-open" or "open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	}
	return "unknown"
}

// breaker is a consecutive-failures circuit breaker. While closed it costs
// two atomic loads per call; the mutex is taken only when a call fails or the
// breaker is not closed.
type breaker struct {
	threshold int32
	cooldown  time.Duration
	now       func() time.Time

	state    atomic.Int32 // a BreakerState; written with mu held
	failures atomic.Int32 // consecutive failures; written with mu held

	mu       sync.Mutex // guards openedAt, probing and the writes above
	openedAt time.Time
	probing  bool // a half-open probe is in flight
}

// transition is a state change caused by one call.
type transition struct{ from, to BreakerState }

func (t transition) changed() bool { return t.from != t.to }

// allow reports whether a call may go to the primary store. When the
// cooldown is over it admits exactly one probe; that call must end with
// success, failure or release.
func (b *breaker) allow() (bool, transition) {
	if BreakerState(b.state.Load()) == BreakerClosed {
		return true, transition{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	from := BreakerState(b.state.Load())
	switch from {
	case BreakerClosed:
		return true, transition{}
	case BreakerOpen:
		if b.now().Sub(b.openedAt) < b.cooldown {
			return false, transition{from, from}
		}
		b.state.Store(int32(BreakerHalfOpen))
		b.probing = true
		return true, transition{from, BreakerHalfOpen}
	default: // half-open
		if b.probing {
			return false, transition{from, from}
		}
		b.probing = true
		return true, transition{from, from}
	}
}

// success records a call that succeeded and closes the breaker.
func (b *breaker) success() transition {
	if BreakerState(b.state.Load()) == BreakerClosed && b.failures.Load() == 0 {
		return transition{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	from := BreakerState(b.state.Load())
	b.failures.Store(0)
	b.probing = false
	b.state.Store(int32(BreakerClosed))
	return transition{from, BreakerClosed}
}

// failure records a call that failed; threshold consecutive failures, or a
// failed probe, open the breaker for the cooldown.
func (b *breaker) failure() transition {
	b.mu.Lock()
	defer b.mu.Unlock()
	from := BreakerState(b.state.Load())
	n := b.failures.Add(1)
	if from == BreakerHalfOpen || (from == BreakerClosed && n >= b.threshold) {
		b.state.Store(int32(BreakerOpen))
		b.openedAt = b.now()
		b.probing = false
		return transition{from, BreakerOpen}
	}
	return transition{from, from}
}

// release ends a call that neither succeeded nor failed (the caller gave
// up), so that a half-open breaker admits another probe.
func (b *breaker) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
}

func (b *breaker) State() BreakerState { return BreakerState(b.state.Load()) }
