// Package ratelimit counts quota for tollgate's decisions.
//
// A Store charges every Limit of one decision atomically with the generic
// cell rate algorithm (GCRA, see gcra.go): either each limit allows and is
// charged one request, or nothing is charged, so a denied request consumes no
// quota from any of its limits. Memory counts per replica; Redis counts across
// replicas on one Redis server or a Redis Cluster; Resilient wraps Redis with
// a time budget, a circuit breaker and a fallback for outages.
package ratelimit

import (
	"errors"
	"fmt"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/quota"
)

// ErrInvalidLimit is returned by Take for a Limit that cannot be counted.
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Limit is one counter to charge for one decision (quota.Limit).
type Limit = quota.Limit

// Status is a limit's state after the decision (quota.Status).
type Status = quota.Status

// Result is the outcome of one Take (quota.Result).
type Result = quota.Result

// Store charges all limits of a decision atomically (quota.Store).
type Store = quota.Store

// minInterval is the finest emission interval a store can count: the Redis
// script works in microseconds.
const minInterval = time.Microsecond

// maxWindow bounds the time in which a drained counter refills its whole
// burst (Burst × Period / Requests). The compiler's bounds (period at most
// 744h, burst at most 1000 × requests) keep every policy's limits within
// it. It keeps the stores' arithmetic exact: the window in nanoseconds
// fits an int64, and the Redis script's now + window, in microseconds
// since 1970, stays below 2^53, where Lua's numbers are exact integers.
const maxWindow = 744_000 * time.Hour

// validate checks the limits of one Take.
func validate(limits []Limit) error {
	for i, l := range limits {
		switch {
		case l.Requests < 1:
			return fmt.Errorf("limit %d (%q): requests %d < 1: %w", i, l.Key, l.Requests, ErrInvalidLimit)
		case l.Period < time.Second:
			return fmt.Errorf("limit %d (%q): period %s < 1s: %w", i, l.Key, l.Period, ErrInvalidLimit)
		case l.Period/time.Duration(l.Requests) < minInterval:
			return fmt.Errorf("limit %d (%q): more than one request per %s: %w", i, l.Key, minInterval, ErrInvalidLimit)
		case l.Burst < 0:
			return fmt.Errorf("limit %d (%q): burst %d < 0: %w", i, l.Key, l.Burst, ErrInvalidLimit)
		case l.MaxBurst() > int64(maxWindow/(l.Period/time.Duration(l.Requests))):
			return fmt.Errorf("limit %d (%q): burst %d refills in more than %s: %w", i, l.Key, l.MaxBurst(), maxWindow, ErrInvalidLimit)
		}
	}
	return nil
}
