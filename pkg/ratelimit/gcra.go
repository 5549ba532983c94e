package ratelimit

import (
	"math/bits"
	"time"
)

// gcra is one Limit in the generic cell rate algorithm, in integer time units
// of the store (nanoseconds in Memory, microseconds in the Redis script).
//
// A counter is a single number, its theoretical arrival time (TAT): the time
// at which the counter is full again. A request at now is allowed when
// max(TAT, now) + interval - now <= window, and charging it moves TAT to
// max(TAT, now) + interval. This refills smoothly, one request per interval,
// so unlike a fixed window it never lets 2× the limit through around a window
// boundary. A TAT in the past is the same as a fresh counter, so idle
// counters can be dropped.
//
// The window is Burst intervals: a full counter (TAT <= now) allows Burst
// requests at once, and then one per interval. With Burst = Requests (the
// default) the window is the Period.
//
// A counter also keeps the emission interval it was charged at, so that a
// changed Requests or Period for an existing key (a tier change) keeps its
// fill level counted in requests, not in time: a user who spent 2 of a free
// tier's 2 and then sends a premium (4) token has spent 2 of 4 (rescale).
// A changed Burst keeps the same TAT, clamped to now + window, so that a
// lowered limit never makes a client wait more than one new window.
type gcra struct {
	interval int64 // emission interval: Period / Requests, >= 1
	window   int64 // interval * Burst: the burst tolerance plus one interval
}

func newGCRA(l Limit, unit time.Duration) gcra {
	interval := max(int64(l.Period/unit)/l.Requests, 1)
	// window is a whole number of intervals so that exactly Burst fit in a
	// burst even when Period / Requests is rounded down. validate bounds
	// it (maxWindow), so it does not overflow.
	return gcra{interval: interval, window: interval * l.MaxBurst()}
}

// rescale returns the TAT, in g's terms, of a counter whose stored TAT was
// charged at emission interval: the same number of requests still to
// refill, (tat - now) / interval, at g's interval. An interval of 0 (a
// counter stored without one) is taken as g's. The result is at most
// now + window, which clamp would make of anything larger.
func (g gcra) rescale(tat, interval, now int64) int64 {
	if interval <= 0 || interval == g.interval || tat <= now {
		return tat
	}
	hi, lo := bits.Mul64(uint64(tat-now), uint64(g.interval))
	if hi >= uint64(interval) {
		return now + g.window
	}
	q, _ := bits.Div64(hi, lo, uint64(interval))
	return now + int64(min(q, uint64(g.window)))
}

// clamp returns the TAT of a counter at now, given the stored TAT (0 or any
// past value for a missing counter).
func (g gcra) clamp(tat, now int64) int64 {
	return min(max(tat, now), now+g.window)
}

// allows reports whether one more request fits a counter with the clamped TAT.
func (g gcra) allows(tat, now int64) bool {
	return tat+g.interval-now <= g.window
}

// status describes a counter with the clamped TAT at now, after charging one
// request when charged is true.
func (g gcra) status(l Limit, tat, now int64, charged bool, unit time.Duration) Status {
	s := Status{Limit: l.Requests, Allowed: g.allows(tat, now)}
	if charged {
		tat += g.interval
	}
	s.Remaining = max((g.window-(tat-now))/g.interval, 0)
	s.Reset = time.Duration(tat-now) * unit
	if !s.Allowed {
		s.RetryAfter = time.Duration(tat+g.interval-now-g.window) * unit
	}
	return s
}
