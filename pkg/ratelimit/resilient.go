package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OnError is what a Resilient store does when its primary store cannot
// answer (--on-store-error).
type OnError int

const (
	// OnErrorLocal counts in the per-replica fallback store: limits hold
	// per replica instead of across replicas. Counts made during the outage
	// are not carried back to the primary store when it recovers.
	OnErrorLocal OnError = iota
	// OnErrorAllow allows every request, without Statuses.
	OnErrorAllow
	// OnErrorDeny denies every request, without Statuses; see
	// Result.Degraded for the answer to give.
	OnErrorDeny
)

// ParseOnError parses "local", "allow" or "deny".
func ParseOnError(s string) (OnError, error) {
	switch s {
	case "local":
		return OnErrorLocal, nil
	case "allow":
		return OnErrorAllow, nil
	case "deny":
		return OnErrorDeny, nil
	}
	return 0, fmt.Errorf("ratelimit: on-store-error %q: want local, allow or deny", s)
}

// String returns the flag value of o.
func (o OnError) String() string {
	switch o {
	case OnErrorLocal:
		return "local"
	case OnErrorAllow:
		return "allow"
	case OnErrorDeny:
		return "deny"
	}
	return fmt.Sprintf("OnError(%d)", int(o))
}

// MaxBudget is the longest a decision may wait on the primary store.
const MaxBudget = 100 * time.Millisecond

// ResilientOptions configures a Resilient store. The zero value means:
// OnErrorLocal, a 100 ms budget, open after 3 consecutive failures for 1 s.
type ResilientOptions struct {
	OnError OnError
	// Budget bounds each Take of the primary store, retries included.
	// Default MaxBudget. A longer budget breaks SPEC's bound on the time a
	// check waits on Redis: it is for tests that prove exactness on a
	// loaded machine, where no decision may fall back because the machine
	// is slow (see also ClientOptions.Timeout).
	Budget time.Duration
	// FailureThreshold is the number of consecutive failures that opens the
	// breaker. Default 3.
	FailureThreshold int
	// Cooldown is how long the breaker stays open before one probe request
	// may try the primary store again. Default 1s.
	Cooldown time.Duration
	// Logger gets one line per transition between up and down. Default:
	// discard.
	Logger *slog.Logger
	// Registerer gets the tollgate_quota_store_* metrics; nil registers
	// nothing.
	Registerer prometheus.Registerer
	// Now is the breaker's clock. Default time.Now.
	Now func() time.Time
}

// Resilient is a Store that asks a primary store (Redis) within a time budget
// and behind a circuit breaker, and answers per OnError when it cannot: so a
// dead or hanging Redis never holds a decision longer than the budget, and
// while the breaker is open it adds no time at all. Recovery is automatic:
// after the cooldown one request probes the primary store, and success
// closes the breaker.
//
// Results answered without the primary store have Degraded set.
type Resilient struct {
	primary  Store
	fallback Store
	onError  OnError
	budget   time.Duration
	breaker  breaker
	metrics  *metrics
	log      *slog.Logger
	// reached is set once the primary store has answered a Take or a
	// Ping: until then it is not reported up.
	reached atomic.Bool
	// lastErr is the error of the last failed call to the primary store.
	lastErr atomic.Pointer[error]
}

var _ Store = (*Resilient)(nil)

// A Pinger is a store that can say whether it answers without counting
// anything. Redis is one.
type Pinger interface {
	Ping(ctx context.Context) error
}

// NewResilient returns a Resilient store over primary. fallback is the
// per-replica store used with OnErrorLocal (usually a Memory store) and may
// be nil otherwise.
func NewResilient(primary, fallback Store, opts ResilientOptions) (*Resilient, error) {
	if primary == nil {
		return nil, errors.New("ratelimit: resilient store without a primary store")
	}
	if opts.OnError == OnErrorLocal && fallback == nil {
		return nil, errors.New("ratelimit: on-store-error local needs a fallback store")
	}
	if opts.OnError < OnErrorLocal || opts.OnError > OnErrorDeny {
		return nil, fmt.Errorf("ratelimit: unknown %v", opts.OnError)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Resilient{
		primary:  primary,
		fallback: fallback,
		onError:  opts.OnError,
		budget:   orDefault(opts.Budget, MaxBudget),
		metrics:  m,
		log:      opts.Logger,
	}
	r.breaker.threshold = int32(orDefault(opts.FailureThreshold, 3))
	r.breaker.cooldown = orDefault(opts.Cooldown, time.Second)
	r.breaker.now = opts.Now
	if r.breaker.now == nil {
		r.breaker.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// orDefault returns v, or def when v is not positive.
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Budget returns the longest a Take waits on the primary store.
func (r *Resilient) Budget() time.Duration { return r.budget }

// State returns the breaker state, for the /readyz body.
func (r *Resilient) State() BreakerState { return r.breaker.State() }

// Up reports whether decisions are counted by the primary store: it has
// answered since the start and the breaker is closed. /readyz shows it but
// must stay ready when it is false.
func (r *Resilient) Up() bool { return r.reached.Load() && r.breaker.State() == BreakerClosed }

// Err returns the error of the last call to the primary store that failed
// (a Take or a Ping), or nil when none has; it is not cleared by a
// success (see Up).
func (r *Resilient) Err() error {
	if p := r.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Ping asks the primary store whether it answers, within the budget and
// through the breaker, as a Take does but without counting: a failed ping
// counts toward opening the breaker, and once the cooldown is over a ping
// may be the probe that closes it. Called periodically (the server pings
// twice a second from its start), it makes Up and tollgate_quota_store_up
// follow the store whether or not requests arrive. A primary store that is
// no Pinger always answers. Ping returns the store's error, or an error
// when the breaker is open and it did not ask.
func (r *Resilient) Ping(ctx context.Context) error {
	p, ok := r.primary.(Pinger)
	if !ok {
		r.succeeded()
		return nil
	}
	allowed, t := r.breaker.allow()
	r.observe(t, nil)
	if !allowed {
		return errors.New("ratelimit: quota store down: breaker open")
	}
	bctx, cancel := context.WithTimeout(ctx, r.budget)
	err := p.Ping(bctx)
	cancel()
	if err == nil {
		r.succeeded()
		return nil
	}
	if ctx.Err() != nil {
		r.breaker.release()
		return fmt.Errorf("ratelimit: ping quota store: %w", context.Cause(ctx))
	}
	r.failed(err)
	return err
}

// succeeded records a call that the primary store answered.
func (r *Resilient) succeeded() {
	t := r.breaker.success()
	if !r.reached.Load() && !r.reached.Swap(true) && !t.changed() {
		// The first answer since the start: up, without a transition.
		r.metrics.up.Set(1)
		r.log.Info("quota store up", "breaker", BreakerClosed.String())
	}
	r.observe(t, nil)
}

// failed records a call that the primary store failed.
func (r *Resilient) failed(err error) {
	r.lastErr.Store(&err)
	r.observe(r.breaker.failure(), err)
}

// Take implements Store. It returns an error only for invalid limits or when
// ctx ends first; a failing primary store gives a Degraded result instead.
// statuses goes to the store that answers (see Store).
func (r *Resilient) Take(ctx context.Context, limits []Limit, statuses []Status) (Result, error) {
	if err := validate(limits); err != nil {
		return Result{}, err
	}
	ok, t := r.breaker.allow()
	r.observe(t, nil)
	if !ok {
		return r.degrade(ctx, limits, statuses)
	}
	start := time.Now()
	var res Result
	var err error
	if p, ok := r.primary.(deadlineTaker); ok {
		res, err = p.takeBy(ctx, start.Add(r.budget), limits, statuses)
	} else {
		bctx, cancel := context.WithTimeout(ctx, r.budget)
		res, err = r.primary.Take(bctx, limits, statuses)
		cancel()
	}
	r.metrics.latency.Observe(time.Since(start).Seconds())
	if err == nil {
		r.succeeded()
		return res, nil
	}
	if ctx.Err() != nil {
		// The caller gave up, which says nothing about the store.
		r.breaker.release()
		return Result{}, fmt.Errorf("ratelimit: quota store: %w", context.Cause(ctx))
	}
	r.metrics.errors.Inc()
	r.failed(err)
	return r.degrade(ctx, limits, statuses)
}

// deadlineTaker is a Store that takes the budget as a deadline of its own
// rather than in a context, which costs a context and a timer per Take
// (Redis: see takeBy).
type deadlineTaker interface {
	takeBy(ctx context.Context, deadline time.Time, limits []Limit, statuses []Status) (Result, error)
}

var _ deadlineTaker = (*Redis)(nil)

// degrade answers without the primary store.
func (r *Resilient) degrade(ctx context.Context, limits []Limit, statuses []Status) (Result, error) {
	switch r.onError {
	case OnErrorAllow:
		return Result{Allowed: true, Degraded: true}, nil
	case OnErrorDeny:
		return Result{Allowed: false, Degraded: true}, nil
	}
	res, err := r.fallback.Take(ctx, limits, statuses)
	if err != nil {
		return Result{}, fmt.Errorf("ratelimit: fallback quota store: %w", err)
	}
	res.Degraded = true
	return res, nil
}

// observe updates the metrics and logs on a breaker transition.
func (r *Resilient) observe(t transition, err error) {
	if !t.changed() {
		return
	}
	r.metrics.breaker.Set(float64(t.to))
	switch {
	case t.to == BreakerOpen && t.from == BreakerClosed:
		r.metrics.up.Set(0)
		r.log.Warn("quota store down", "breaker", t.to.String(), "on_store_error", r.onError.String(),
			"failures", r.breaker.threshold, "cooldown", r.breaker.cooldown, "error", err)
	case t.to == BreakerClosed:
		r.metrics.up.Set(1)
		r.log.Info("quota store up", "breaker", t.to.String())
	}
}
