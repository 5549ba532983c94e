// Package quota holds what the decision core and the quota stores
// (pkg/ratelimit) share, with the standard library only: the Limits of one
// decision, the Result of charging them, and the Store interface.
package quota

import (
	"context"
	"time"
)

// Limit is one counter to charge for one decision.
type Limit struct {
	// Key is the unique counter identity built by the caller (see
	// policy.CounterPrefix). It may contain any bytes and be of any length;
	// stores escape or hash it as they need. It is borrowed: the caller
	// may reuse its bytes once Take returns, so a store copies what it
	// keeps or sends later (a Redis pipeline that outlives a Take on its
	// deadline sends its own copy). A tier changes Requests, Burst and
	// Period, never the Key, so every subscriber keeps their own counter.
	Key []byte
	// Requests is the number of requests refilled per Period (>= 1): one
	// every Period / Requests.
	Requests int64
	// Burst is the most requests allowed at once: a full counter allows
	// Burst requests together. 0 means Requests. A drained counter is
	// full again after Burst refills.
	Burst int64
	// Period is the time in which Requests refill (>= 1s).
	Period time.Duration
}

// MaxBurst returns the burst of l: Burst, or Requests when Burst is 0.
func (l *Limit) MaxBurst() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Requests
}

// Status is a limit's state after the decision.
type Status struct {
	// Limit is the limit's Requests (X-RateLimit-Limit).
	Limit int64
	// Remaining is how many requests the counter allows at once now: what
	// is left of the burst.
	Remaining int64
	// Reset is the time until the counter is full again, the whole burst
	// refilled (for X-RateLimit-Reset, in seconds, rounded up).
	Reset time.Duration
	// RetryAfter is, when this limit denies, the time until one request would
	// be allowed; 0 otherwise.
	RetryAfter time.Duration
	// Allowed reports whether this limit alone would allow the request.
	Allowed bool
}

// Result is the outcome of one Take.
type Result struct {
	Allowed bool
	// Statuses has one Status per Limit, in the order the limits were passed
	// in. It is empty when Degraded and the result comes from OnErrorAllow or
	// OnErrorDeny.
	Statuses []Status
	// Degraded reports that the shared store could not be asked and the
	// result follows the OnError policy of a Resilient store. With
	// OnErrorLocal the Statuses come from the per-replica fallback. The caller
	// should answer a degraded denial without Statuses with 429 and
	// "Retry-After: 1" (not 503: clients back off on 429, while a 5xx trips
	// retry policies and outlier detection in front of tollgate and turns an
	// outage into more load).
	Degraded bool
}

// Store charges all limits of a decision atomically: either every limit
// allows and each is charged one request, or nothing is charged.
//
// Take returns an error only when the store could not decide (for example
// Redis is unreachable or ctx expired) or a Limit is invalid
// (ratelimit.ErrInvalidLimit); a denial is a Result with Allowed false and a nil error.
// Take with no limits allows.
//
// statuses is the caller's buffer for Result.Statuses: when its capacity
// holds one Status per limit, Take writes them there and Result.Statuses
// is statuses[:len(limits)], so that a caller that reuses its buffer
// charges without allocating; otherwise (nil, say) Take allocates them.
// Only Take writes the buffer, and only before it returns.
type Store interface {
	Take(ctx context.Context, limits []Limit, statuses []Status) (Result, error)
}

// StatusesFor returns buf[:n] when buf can hold n Statuses, else a new
// slice of n: the Statuses of a Take of n limits (see Store).
func StatusesFor(buf []Status, n int) []Status {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]Status, n)
}
