package logging

import (
	"sync/atomic"
	"time"

	"github.com/tollgate-dev/tollgate/internal/cowmap"
)

// LimiterOptions configures a Limiter. The zero value means: a burst of 20
// lines per key, then one every 500 ms (2 per second).
type LimiterOptions struct {
	// Burst is how many lines of one key may pass at once.
	Burst int
	// Every is the time after which one more line of a key may pass.
	Every time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// A Limiter keeps a flood of similar events from becoming a flood of log
// lines: per key (such as a deny reason; keys should be few), it lets
// Burst lines pass at once and one per Every after that, and counts the
// lines it holds back, for a periodic summary (Suppressed). It is safe for
// concurrent use, and Allow takes no lock and does not allocate once a
// key has been seen.
type Limiter struct {
	every, burst int64 // nanoseconds; burst is Burst × Every
	now          func() time.Time
	start        time.Time
	keys         cowmap.Map[string, *limiterKey]
}

// limiterKey is the state of one key: a GCRA over nanoseconds since start.
type limiterKey struct {
	// tat is the theoretical arrival time of the next line: the key is
	// full (Burst lines may pass) when tat <= now.
	tat        atomic.Int64
	suppressed atomic.Int64
}

// NewLimiter returns a Limiter configured by opts.
func NewLimiter(opts LimiterOptions) *Limiter {
	if opts.Burst <= 0 {
		opts.Burst = 20
	}
	if opts.Every <= 0 {
		opts.Every = 500 * time.Millisecond
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{
		every: int64(opts.Every),
		burst: int64(opts.Every) * int64(opts.Burst),
		now:   opts.Now,
		start: opts.Now(),
	}
}

// Allow reports whether a line of key may be logged now; when it may not,
// the line is counted as suppressed.
func (l *Limiter) Allow(key string) bool {
	k := l.keys.Get(key, newLimiterKey)
	now := int64(l.now().Sub(l.start))
	for {
		tat := k.tat.Load()
		next := max(tat, now) + l.every
		if next-now > l.burst {
			k.suppressed.Add(1)
			return false
		}
		if k.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

func newLimiterKey(string) *limiterKey { return new(limiterKey) }

// Suppressed calls fn with each key whose lines were held back since the
// last call, and how many; the counts start again from zero.
func (l *Limiter) Suppressed(fn func(key string, n int64)) {
	l.keys.Range(func(key string, k *limiterKey) bool {
		if n := k.suppressed.Swap(0); n > 0 {
			fn(key, n)
		}
		return true
	})
}
