package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/internal/testlog"
)

func TestParseOnError(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    OnError
		wantErr bool
	}{
		"local falls back to memory":  {in: "local", want: OnErrorLocal},
		"allow lets requests through": {in: "allow", want: OnErrorAllow},
		"deny rejects requests":       {in: "deny", want: OnErrorDeny},
		"anything else is an error":   {in: "Deny", wantErr: true},
		"empty is an error":           {in: "", wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseOnError(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("ParseOnError(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil && got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestNewResilientRejectsBadOptions(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	tests := map[string]struct {
		primary, fallback Store
		opts              ResilientOptions
	}{
		"no primary":               {nil, mem, ResilientOptions{}},
		"local without a fallback": {mem, nil, ResilientOptions{OnError: OnErrorLocal}},
		"an unknown on-error":      {mem, mem, ResilientOptions{OnError: 7}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := NewResilient(tt.primary, tt.fallback, tt.opts); err == nil {
				t.Fatal("NewResilient: nil error")
			}
		})
	}
	t.Run("metrics registered twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := NewResilient(mem, mem, ResilientOptions{Registerer: reg}); err != nil {
			t.Fatal(err)
		}
		_, err := NewResilient(mem, mem, ResilientOptions{Registerer: reg})
		if !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			t.Fatalf("second NewResilient: %v, want AlreadyRegisteredError", err)
		}
	})
}

// metricValue returns the value of the gauge or counter name in reg, or the
// sample count of the histogram name.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// syncBuffer collects log output written from any goroutine.
type syncBuffer = testlog.Buffer

// answersWithin bounds a Take while the primary store is down: far more
// than the budget, so that machine load never fails it, and far less than
// a hang.
const answersWithin = 5 * time.Second

func TestResilientOutage(t *testing.T) {
	outages := map[string]struct {
		start, end func(*redistest.Server)
		// emptied reports whether the outage loses Redis's data.
		emptied bool
	}{
		"redis killed": {(*redistest.Server).Stop, (*redistest.Server).Restart, true},
		"redis hung":   {(*redistest.Server).Pause, (*redistest.Server).Resume, false},
	}
	for _, mode := range []OnError{OnErrorLocal, OnErrorAllow, OnErrorDeny} {
		for outageName, outage := range outages {
			t.Run(mode.String()+"/"+outageName, func(t *testing.T) {
				srv := redistest.StartServer(t)
				clock := newFakeClock()
				reg := prometheus.NewRegistry()
				logs := &syncBuffer{}
				r, err := NewResilient(
					newRedisStore(t, ClientOptions{Addr: srv.Addr}),
					NewMemory(MemoryOptions{Now: clock.Now, SweepInterval: -1}),
					ResilientOptions{
						OnError:          mode,
						FailureThreshold: 3,
						Cooldown:         time.Second,
						Registerer:       reg,
						Logger:           slog.New(slog.NewTextHandler(logs, nil)),
						Now:              clock.Now,
					})
				if err != nil {
					t.Fatal(err)
				}
				limit := Limit{Key: []byte("outage"), Requests: 3, Period: time.Hour}
				if res := mustTake(t, r, limit); !res.Allowed || res.Degraded || res.Statuses[0].Remaining != 2 {
					t.Fatalf("before the outage: %+v, want allowed by Redis with 2 remaining", res)
				}
				if up := metricValue(t, reg, "tollgate_quota_store_up"); up != 1 {
					t.Fatalf("up gauge %v before the outage, want 1", up)
				}

				outage.start(srv)
				for i := range 10 {
					start := time.Now()
					res, err := r.Take(context.Background(), []Limit{limit}, nil)
					// Answers rather than hangs. That a Take waits at most
					// its budget is TestResilientWaitsAtMostItsBudget's,
					// without timing: a loaded machine can always make a
					// call take longer than 100 ms.
					if d := time.Since(start); d >= answersWithin {
						t.Fatalf("take %d during the outage took %s, want an answer within %s", i, d, answersWithin)
					}
					if err != nil {
						t.Fatalf("take %d during the outage: %v", i, err)
					}
					if !res.Degraded {
						t.Fatalf("take %d during the outage: %+v, want Degraded", i, res)
					}
					switch mode {
					case OnErrorAllow:
						if !res.Allowed || len(res.Statuses) != 0 {
							t.Fatalf("take %d: %+v, want allowed without statuses", i, res)
						}
					case OnErrorDeny:
						if res.Allowed || len(res.Statuses) != 0 {
							t.Fatalf("take %d: %+v, want denied without statuses", i, res)
						}
					case OnErrorLocal:
						// The fallback counts from scratch: 3 allowed, then denied.
						if res.Allowed != (i < 3) || len(res.Statuses) != 1 || res.Statuses[0].Remaining != max(int64(2-i), 0) {
							t.Fatalf("take %d: %+v, want the memory store's answer", i, res)
						}
					}
				}
				if r.Up() || r.State() != BreakerOpen {
					t.Fatalf("during the outage: Up %v, state %v; want down and open", r.Up(), r.State())
				}
				for name, want := range map[string]float64{
					"tollgate_quota_store_up":              0,
					"tollgate_quota_store_breaker_state":   2,
					"tollgate_quota_store_errors_total":    3, // the breaker stops calling Redis
					"tollgate_quota_store_latency_seconds": 4,
				} {
					if got := metricValue(t, reg, name); got != want {
						t.Errorf("%s = %v during the outage, want %v", name, got, want)
					}
				}
				if !strings.Contains(logs.String(), `msg="quota store down"`) {
					t.Errorf("no down transition logged:\n%s", logs)
				}

				outage.end(srv)
				deadline := time.Now().Add(10 * time.Second)
				var res Result
				for res = mustTake(t, r, limit); res.Degraded; res = mustTake(t, r, limit) {
					if time.Now().After(deadline) {
						t.Fatalf("still degraded 10s after Redis came back; state %v", r.State())
					}
					clock.Advance(time.Second) // end the cooldown: the next take probes Redis
				}
				wantRemaining := int64(0) // the hung server kept its counter
				if outage.emptied {
					wantRemaining = 2
				}
				if !res.Allowed || res.Statuses[0].Remaining != wantRemaining {
					t.Fatalf("after recovery: %+v, want allowed by Redis with %d remaining", res, wantRemaining)
				}
				if !r.Up() || metricValue(t, reg, "tollgate_quota_store_up") != 1 || metricValue(t, reg, "tollgate_quota_store_breaker_state") != 0 {
					t.Fatalf("after recovery: Up %v, up gauge %v, want up", r.Up(), metricValue(t, reg, "tollgate_quota_store_up"))
				}
				if !strings.Contains(logs.String(), `msg="quota store up"`) {
					t.Errorf("no up transition logged:\n%s", logs)
				}
				// Shared counting resumed: another replica sees this one's charge.
				other := newRedisStore(t, ClientOptions{Addr: srv.Addr})
				shared := Limit{Key: []byte("shared"), Requests: 5, Period: time.Hour}
				mustTake(t, r, shared)
				if got := mustTake(t, other, shared).Statuses[0].Remaining; got != 3 {
					t.Fatalf("another replica sees %d remaining, want 3", got)
				}
			})
		}
	}
}

func TestResilientCallerCancelDoesNotTripBreaker(t *testing.T) {
	srv := redistest.StartServer(t)
	r, err := NewResilient(newRedisStore(t, ClientOptions{Addr: srv.Addr}), nil,
		ResilientOptions{OnError: OnErrorDeny, FailureThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Take(ctx, []Limit{{Key: []byte("k"), Requests: 1, Period: time.Second}}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Take with a canceled ctx: %v, want context.Canceled", err)
	}
	if r.State() != BreakerClosed {
		t.Fatal("a caller's cancel opened the breaker")
	}
}

// TestResilientPingFollowsTheStore: without any Take, pings alone make Up
// and tollgate_quota_store_up follow Redis: not up before it first
// answers, down after FailureThreshold failed pings, up again after the
// cooldown once it answers.
func TestResilientPingFollowsTheStore(t *testing.T) {
	srv := redistest.StartServer(t)
	srv.Stop() // down from the start
	clock := newFakeClock()
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	r, err := NewResilient(newRedisStore(t, ClientOptions{Addr: srv.Addr}), nil, ResilientOptions{
		OnError: OnErrorDeny, FailureThreshold: 3, Cooldown: time.Second,
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)), Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	state := func() (bool, float64) { return r.Up(), metricValue(t, reg, "tollgate_quota_store_up") }
	if up, gauge := state(); up || gauge != 0 {
		t.Fatalf("before Redis ever answered: Up %v, gauge %v; want down", up, gauge)
	}
	for i := range 3 {
		if err := r.Ping(ctx); err == nil {
			t.Fatalf("ping %d of a stopped Redis succeeded", i)
		}
	}
	if up, gauge := state(); up || gauge != 0 || r.State() != BreakerOpen || r.Err() == nil {
		t.Fatalf("after 3 failed pings: Up %v, gauge %v, state %v, error %v", up, gauge, r.State(), r.Err())
	}

	srv.Restart()
	if err := r.Ping(ctx); err == nil || r.Up() {
		t.Fatalf("a ping within the cooldown: %v, up %v; want refused by the open breaker", err, r.Up())
	}
	clock.Advance(time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for r.Ping(ctx) != nil { // go-redis redials with a backoff
		if time.Now().After(deadline) {
			t.Fatalf("Redis back for 10s, pings still fail: %v", r.Err())
		}
		clock.Advance(time.Second)
	}
	if up, gauge := state(); !up || gauge != 1 {
		t.Fatalf("after Redis answered a ping: Up %v, gauge %v; want up", up, gauge)
	}
	if err := r.Ping(ctx); err != nil || strings.Count(logs.String(), `msg="quota store up"`) != 1 {
		t.Fatalf("ping: %v; logs:\n%s\nwant one up line", err, logs)
	}

	srv.Stop()
	for range 3 {
		_ = r.Ping(ctx)
	}
	if up, gauge := state(); up || gauge != 0 || strings.Count(logs.String(), `msg="quota store down"`) != 2 {
		t.Fatalf("Redis stopped again: Up %v, gauge %v; logs:\n%s", up, gauge, logs)
	}
}

func TestResilientPrimaryWithoutPingIsUp(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	r, err := NewResilient(mem, nil, ResilientOptions{OnError: OnErrorDeny})
	if err != nil {
		t.Fatal(err)
	}
	if r.Up() {
		t.Fatal("up before any call")
	}
	if err := r.Ping(context.Background()); err != nil || !r.Up() {
		t.Fatalf("ping: %v, up %v", err, r.Up())
	}
}

// blockingStore is a primary store that never answers: each Take waits for
// its ctx to end, and records the time it was called and ctx's deadline.
// A ctx without a deadline, or with one over a second away, fails at once
// instead, so that a broken budget fails the test rather than hangs it.
type blockingStore struct {
	mu     sync.Mutex // guards calls
	calls  []blockedCall
	called chan struct{} // one value per call
}

type blockedCall struct {
	at, deadline time.Time
	hasDeadline  bool
}

func (b *blockingStore) Take(ctx context.Context, _ []Limit, _ []Status) (Result, error) {
	d, ok := ctx.Deadline()
	b.mu.Lock()
	b.calls = append(b.calls, blockedCall{at: time.Now(), deadline: d, hasDeadline: ok})
	b.mu.Unlock()
	b.called <- struct{}{}
	if !ok || time.Until(d) > time.Second {
		return Result{}, errors.New("blockingStore: no deadline within a second")
	}
	<-ctx.Done()
	return Result{}, ctx.Err()
}

// TestResilientWaitsAtMostItsBudget proves the bound on the time a decision
// waits on the primary store without timing anything: the primary never
// answers, so a Take can only return because the ctx it was given ended,
// and that ctx's deadline is at most the budget after the call began. Once
// the breaker is open, the primary is not called at all.
func TestResilientWaitsAtMostItsBudget(t *testing.T) {
	tests := map[string]struct {
		budget time.Duration
		// callerTimeout, when set, is the caller's own, shorter deadline.
		callerTimeout time.Duration
		want          time.Duration
	}{
		"the default budget is the 100 ms of SPEC": {want: MaxBudget},
		"serve's budget of 75 ms":                  {budget: 75 * time.Millisecond, want: 75 * time.Millisecond},
		"a caller's earlier deadline is kept":      {budget: MaxBudget, callerTimeout: 10 * time.Millisecond, want: 10 * time.Millisecond},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			primary := &blockingStore{called: make(chan struct{}, 10)}
			clock := newFakeClock()
			r, err := NewResilient(primary, nil, ResilientOptions{
				OnError: OnErrorDeny, Budget: tt.budget, FailureThreshold: 2, Now: clock.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			limit := []Limit{{Key: []byte("k"), Requests: 1, Period: time.Second}}
			for i := range 2 {
				ctx := context.Background()
				if tt.callerTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.callerTimeout)
					defer cancel()
				}
				res, err := r.Take(ctx, limit, nil)
				if tt.callerTimeout > 0 {
					// The caller gave up: an error, not a verdict on the store.
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("take %d: %+v, %v; want the caller's deadline", i, res, err)
					}
				} else if err != nil || !res.Degraded || res.Allowed {
					t.Fatalf("take %d: %+v, %v; want a degraded denial", i, res, err)
				}
			}
			primary.mu.Lock()
			calls := primary.calls
			primary.mu.Unlock()
			if len(calls) != 2 {
				t.Fatalf("primary called %d times, want 2", len(calls))
			}
			for i, c := range calls {
				if !c.hasDeadline {
					t.Fatalf("call %d: the primary's ctx has no deadline", i)
				}
				// The deadline was set before the call began, so it is at
				// most the budget after it, however slow the machine.
				if d := c.deadline.Sub(c.at); d > tt.want {
					t.Fatalf("call %d: deadline %s after the call, want at most %s", i, d, tt.want)
				}
			}
			if tt.callerTimeout > 0 {
				return
			}
			// Two failures opened the breaker: the next Takes answer per
			// OnError without calling the primary, until the cooldown ends.
			if r.State() != BreakerOpen {
				t.Fatalf("breaker %v after 2 failures, want open", r.State())
			}
			for range 5 {
				if res, err := r.Take(context.Background(), limit, nil); err != nil || !res.Degraded {
					t.Fatalf("take with the breaker open: %+v, %v", res, err)
				}
			}
			if n := len(primary.called); n != 2 {
				t.Fatalf("primary called %d times with the breaker open, want still 2", n)
			}
		})
	}
}

// TestRegisterUpHasEveryStoreMetric: with the memory store, a scrape finds
// the same quota store metrics as with Redis (SPEC Observability: quota
// store latency and errors), up at 1 and the rest at zero.
func TestRegisterUpHasEveryStoreMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := RegisterUp(reg); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"tollgate_quota_store_up":              1,
		"tollgate_quota_store_errors_total":    0,
		"tollgate_quota_store_latency_seconds": 0,
		"tollgate_quota_store_breaker_state":   0,
	} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
