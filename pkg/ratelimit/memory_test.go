package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// step is one Take in a GCRA scenario, after moving the clock by advance.
type step struct {
	advance time.Duration
	limits  []Limit
	want    Result
}

// burst returns n steps that take limits at once, expecting each to be
// allowed with the remaining count going down from first.
func burst(l Limit, n int, first int64, reset time.Duration) []step {
	steps := make([]step, n)
	interval := l.Period / time.Duration(l.Requests)
	for i := range steps {
		steps[i] = step{limits: []Limit{l}, want: allow(status(l.Requests, first-int64(i), reset+time.Duration(i)*interval))}
	}
	return steps
}

func status(limit, remaining int64, reset time.Duration) Status {
	return Status{Limit: limit, Remaining: remaining, Reset: reset, Allowed: true}
}

func denied(limit int64, reset, retry time.Duration) Status {
	return Status{Limit: limit, Reset: reset, RetryAfter: retry}
}

func allow(s ...Status) Result { return Result{Allowed: true, Statuses: s} }
func deny(s ...Status) Result  { return Result{Allowed: false, Statuses: s} }

func steps(groups ...[]step) []step {
	var out []step
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func TestMemoryGCRA(t *testing.T) {
	three := Limit{Key: []byte("k"), Requests: 3, Period: 3 * time.Second}
	ten := Limit{Key: []byte("k"), Requests: 10, Period: 10 * time.Second}
	big := Limit{Key: []byte("b"), Requests: 5, Period: 5 * time.Second}
	smallBurst := Limit{Key: []byte("s"), Requests: 10, Burst: 3, Period: 10 * time.Second}
	bigBurst := Limit{Key: []byte("B"), Requests: 1, Burst: 3, Period: time.Second}
	tests := map[string][]step{
		"a burst of Requests is allowed and the next request is denied": steps(
			burst(three, 3, 2, time.Second),
			[]step{{limits: []Limit{three}, want: deny(denied(3, 3*time.Second, time.Second))}},
		),
		"a drained counter refills one request per interval": steps(
			burst(three, 3, 2, time.Second),
			[]step{
				{advance: 999 * time.Millisecond, limits: []Limit{three}, want: deny(denied(3, 2001*time.Millisecond, time.Millisecond))},
				{advance: time.Millisecond, limits: []Limit{three}, want: allow(status(3, 0, 3*time.Second))},
				{advance: 3 * time.Second, limits: []Limit{three}, want: allow(status(3, 2, time.Second))},
			},
		),
		"a full burst just before and after a window boundary is not let through twice": steps(
			[]step{{advance: 9900 * time.Millisecond, limits: []Limit{ten}, want: allow(status(10, 9, time.Second))}},
			burst(ten, 9, 8, 2*time.Second)[:9],
			[]step{{advance: 200 * time.Millisecond, limits: []Limit{ten}, want: deny(denied(10, 9800*time.Millisecond, 800*time.Millisecond))}},
		),
		"denied requests consume nothing": steps(
			burst(three, 3, 2, time.Second),
			[]step{
				{limits: []Limit{three}, want: deny(denied(3, 3*time.Second, time.Second))},
				{limits: []Limit{three}, want: deny(denied(3, 3*time.Second, time.Second))},
				{advance: time.Second, limits: []Limit{three}, want: allow(status(3, 0, 3*time.Second))},
			},
		),
		"a denial by one limit charges none of the others": steps(
			burst(three, 3, 2, time.Second),
			[]step{
				{limits: []Limit{big, three}, want: deny(status(5, 5, 0), denied(3, 3*time.Second, time.Second))},
				{limits: []Limit{big}, want: allow(status(5, 4, time.Second))},
			},
		),
		"every limit of an allowed request is charged": {
			{limits: []Limit{big, three}, want: allow(status(5, 4, time.Second), status(3, 2, time.Second))},
			{limits: []Limit{big}, want: allow(status(5, 3, 2*time.Second))},
		},
		"a key listed twice is charged twice": {
			{limits: []Limit{three, three}, want: allow(status(3, 2, time.Second), status(3, 1, 2*time.Second))},
			{limits: []Limit{three, three}, want: deny(status(3, 1, 2*time.Second), denied(3, 3*time.Second, time.Second))},
			{limits: []Limit{three}, want: allow(status(3, 0, 3*time.Second))},
		},
		"a lowered limit waits at most one interval of the new limit": steps(
			burst(Limit{Key: []byte("k"), Requests: 100, Period: 100 * time.Second}, 100, 99, time.Second),
			[]step{{limits: []Limit{three}, want: deny(denied(3, 3*time.Second, time.Second))}},
		),
		// A tier changes the limit, not the counter: the requests spent
		// count against the new limit, which refills at its own rate.
		"a raised limit keeps the requests spent: 5 of 10 is 5 of 100": steps(
			burst(ten, 5, 9, time.Second),
			[]step{{limits: []Limit{{Key: []byte("k"), Requests: 100, Period: 10 * time.Second}}, want: allow(status(100, 94, 600*time.Millisecond))}},
		),
		"a free tier's 2 of 2 spent leave 2 of a premium tier's 4": steps(
			burst(Limit{Key: []byte("k"), Requests: 2, Period: time.Hour}, 2, 1, 30*time.Minute),
			[]step{
				{limits: []Limit{{Key: []byte("k"), Requests: 4, Period: time.Hour}}, want: allow(status(4, 1, 45*time.Minute))},
				{limits: []Limit{{Key: []byte("k"), Requests: 4, Period: time.Hour}}, want: allow(status(4, 0, time.Hour))},
				{limits: []Limit{{Key: []byte("k"), Requests: 4, Period: time.Hour}}, want: deny(denied(4, time.Hour, 15*time.Minute))},
				// Back on the free tier, 4 spent are more than its 2: full.
				{limits: []Limit{{Key: []byte("k"), Requests: 2, Period: time.Hour}}, want: deny(denied(2, time.Hour, 30*time.Minute))},
			},
		),
		"a lowered limit keeps the requests spent: 2 of 10 is 2 of 2": steps(
			burst(ten, 2, 9, time.Second),
			[]step{{limits: []Limit{{Key: []byte("k"), Requests: 2, Period: 10 * time.Second}}, want: deny(denied(2, 10*time.Second, 5*time.Second))}},
		),
		"a burst smaller than Requests allows Burst at once, then one per interval": steps(
			burst(smallBurst, 3, 2, time.Second),
			[]step{
				{limits: []Limit{smallBurst}, want: deny(denied(10, 3*time.Second, time.Second))},
				{advance: time.Second, limits: []Limit{smallBurst}, want: allow(status(10, 0, 3*time.Second))},
				{advance: 3 * time.Second, limits: []Limit{smallBurst}, want: allow(status(10, 2, time.Second))},
			},
		),
		"a burst larger than Requests allows Burst at once, then Requests per Period": steps(
			burst(bigBurst, 3, 2, time.Second),
			[]step{
				{limits: []Limit{bigBurst}, want: deny(denied(1, 3*time.Second, time.Second))},
				{advance: time.Second, limits: []Limit{bigBurst}, want: allow(status(1, 0, 3*time.Second))},
			},
		),
		"a smaller burst for a key (a tier change) keeps its counter": steps(
			burst(ten, 5, 9, time.Second),
			[]step{
				// The counter is full again in 5s; with burst 3 it holds 3s,
				// clamped, and one more request needs one more interval.
				{limits: []Limit{{Key: []byte("k"), Requests: 10, Burst: 3, Period: 10 * time.Second}}, want: deny(denied(10, 3*time.Second, time.Second))},
				// Back to the limit without a burst: the denial charged
				// nothing, and the counter is where the 5 requests left it.
				{limits: []Limit{ten}, want: allow(status(10, 4, 6*time.Second))},
			},
		),
		"a counter idle for a Period is full again": steps(
			burst(three, 3, 2, time.Second),
			[]step{{advance: 3 * time.Second, limits: []Limit{three}, want: allow(status(3, 2, time.Second))}},
		),
		"no limits allow": {{want: Result{Allowed: true}}},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock()
			m := NewMemory(MemoryOptions{Now: clock.Now, SweepInterval: -1})
			for i, s := range steps {
				clock.Advance(s.advance)
				got, err := m.Take(context.Background(), s.limits, nil)
				if err != nil {
					t.Fatalf("step %d: Take: %v", i, err)
				}
				if !reflect.DeepEqual(got, s.want) {
					t.Fatalf("step %d:\n got %+v\nwant %+v", i, got, s.want)
				}
			}
		})
	}
}

func TestTakeRejectsInvalidLimits(t *testing.T) {
	tests := map[string]Limit{
		"zero requests":                              {Key: []byte("k"), Requests: 0, Period: time.Second},
		"a period under a second":                    {Key: []byte("k"), Requests: 1, Period: 999 * time.Millisecond},
		"more than one request per µs":               {Key: []byte("k"), Requests: 2_000_000, Period: time.Second},
		"negative requests":                          {Key: []byte("k"), Requests: -1, Period: time.Minute},
		"negative burst":                             {Key: []byte("k"), Requests: 1, Burst: -1, Period: time.Minute},
		"a burst that refills in more than 744,000h": {Key: []byte("k"), Requests: 1, Burst: 1001, Period: 744 * time.Hour},
		"a burst whose window would overflow":        {Key: []byte("k"), Requests: 1, Burst: 1 << 62, Period: time.Hour},
	}
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	for name, l := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := m.Take(context.Background(), []Limit{{Key: []byte("ok"), Requests: 1, Period: time.Second}, l}, nil)
			if !errors.Is(err, ErrInvalidLimit) {
				t.Fatalf("Take: got %v, want ErrInvalidLimit", err)
			}
			if m.Len() != 0 {
				t.Fatalf("an invalid Take charged %d counters", m.Len())
			}
		})
	}
}

// takeConcurrently runs n Takes of limits at once and returns how many were
// allowed. Each Take may wait up to a minute: exactness is about atomic
// decisions, not speed, and a loaded machine must not make it fail.
func takeConcurrently(t *testing.T, stores []Store, n int, limits []Limit) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			res, err := stores[i%len(stores)].Take(ctx, limits, nil)
			if err != nil {
				errs <- err
				return
			}
			if res.Allowed {
				allowed.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Take: %v", err)
	}
	return int(allowed.Load())
}

func TestMemoryExactUnderConcurrency(t *testing.T) {
	m := NewMemory(MemoryOptions{Now: newFakeClock().Now, SweepInterval: -1})
	limit := Limit{Key: []byte("shop/tasks-api:per-user:u:iss|alice"), Requests: 20, Period: time.Hour}
	if got := takeConcurrently(t, []Store{m}, 90, []Limit{limit}); got != 20 {
		t.Fatalf("allowed %d of 90, want exactly 20", got)
	}
}

func TestMemoryMultiLimitExactAndDeadlockFree(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now, SweepInterval: -1, Shards: 2})
	// Keys in both orders and over both shards: a lock order that depends on
	// the argument order would deadlock here.
	var keys [][]byte
	for i := 0; len(keys) < 4; i++ {
		k := fmt.Appendf(nil, "k%d", i)
		if m.shard(k) == len(keys)%2 {
			keys = append(keys, k)
		}
	}
	tight := Limit{Key: keys[0], Requests: 50, Period: time.Hour}
	loose := Limit{Key: keys[1], Requests: 1000, Period: time.Hour}
	other := Limit{Key: keys[2], Requests: 1000, Period: time.Hour}
	stores := []Store{m}
	var wg sync.WaitGroup
	var ab, ba int
	wg.Go(func() { ab = takeConcurrently(t, stores, 200, []Limit{tight, loose}) })
	wg.Go(func() { ba = takeConcurrently(t, stores, 200, []Limit{loose, tight, other}) })
	wg.Wait()
	if ab+ba != 50 {
		t.Fatalf("allowed %d+%d, want exactly 50 (the tight limit)", ab, ba)
	}
	res, err := m.Take(context.Background(), []Limit{loose, other}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Statuses[0].Remaining, int64(1000-50-1); got != want {
		t.Errorf("loose remaining %d, want %d: denied requests were charged", got, want)
	}
	if got, want := res.Statuses[1].Remaining, int64(1000-ba-1); got != want {
		t.Errorf("other remaining %d, want %d", got, want)
	}
}

func TestMemorySweepDropsIdleCounters(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now, SweepInterval: -1})
	short := Limit{Key: []byte("short"), Requests: 2, Period: time.Second}
	long := Limit{Key: []byte("long"), Requests: 2, Period: time.Minute}
	for _, l := range []Limit{short, long} {
		if _, err := m.Take(context.Background(), []Limit{l}, nil); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(499 * time.Millisecond)
	m.Sweep()
	if got := m.Len(); got != 2 {
		t.Fatalf("after 499ms: %d counters, want 2", got)
	}
	clock.Advance(time.Millisecond)
	m.Sweep()
	if got := m.Len(); got != 1 {
		t.Fatalf("after 500ms: %d counters, want 1 (short is full again)", got)
	}
	res, err := m.Take(context.Background(), []Limit{short}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := allow(status(2, 1, 500*time.Millisecond)); !reflect.DeepEqual(res, want) {
		t.Fatalf("a swept counter is not fresh: got %+v, want %+v", res, want)
	}
}

func TestMemorySweepShrinksMaps(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now, SweepInterval: -1, Shards: 1})
	for i := range 4096 {
		if _, err := m.Take(context.Background(), []Limit{{Key: fmt.Append(nil, i), Requests: 1, Period: time.Second}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	m.Sweep()
	if got := m.shards[0].peak; got != 0 {
		t.Fatalf("peak after emptying sweep = %d, want 0 (map rebuilt)", got)
	}
}

func TestMemoryBackgroundSweep(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Now: clock.Now, SweepInterval: time.Millisecond})
	defer m.Close()
	if _, err := m.Take(context.Background(), []Limit{{Key: []byte("k"), Requests: 1, Period: time.Second}}, nil); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for m.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the background sweeper did not drop an idle counter within 5s")
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryMaxKeysSurvivesAFlood(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{Shards: 1, MaxKeys: 64, SweepInterval: -1, Now: clock.Now})
	ctx := context.Background()
	limited := []Limit{{Key: []byte("attacker"), Requests: 5, Period: time.Hour}}
	for range 5 {
		if res, _ := m.Take(ctx, limited, nil); !res.Allowed {
			t.Fatal("the first 5 requests must be allowed")
		}
	}
	// A flood of new keys meant to push the drained counter out.
	for i := range 1000 {
		clock.Advance(time.Millisecond)
		if _, err := m.Take(ctx, []Limit{{Key: fmt.Appendf(nil, "flood-%d", i), Requests: 1000, Period: time.Hour}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Len(); n > 64 {
		t.Fatalf("%d counters, want at most MaxKeys (64)", n)
	}
	if res, _ := m.Take(ctx, limited, nil); res.Allowed {
		t.Fatal("the drained counter was evicted by the flood: its limit was reset")
	}
}

func TestMemoryMaxBytesBoundsCountersWhateverTheirKeys(t *testing.T) {
	long := strings.Repeat("x", 60<<10) // a 60 KB header value
	size := counterBytes(hashedKeyLen)
	tests := map[string]struct {
		opts MemoryOptions
		want int
	}{
		"MaxBytes is tighter than MaxKeys":    {MemoryOptions{MaxBytes: 64 * size, MaxKeys: 1000}, 64},
		"MaxKeys is tighter than MaxBytes":    {MemoryOptions{MaxBytes: 1000 * size, MaxKeys: 32}, 32},
		"a bound under one counter keeps one": {MemoryOptions{MaxBytes: 1}, 1},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			tt.opts.Shards, tt.opts.SweepInterval = 1, -1
			m := NewMemory(tt.opts)
			for i := range 500 {
				if _, err := m.Take(context.Background(), []Limit{{Key: fmt.Append(nil, long, i), Requests: 10, Period: time.Hour}}, nil); err != nil {
					t.Fatal(err)
				}
			}
			if got := m.Len(); got != tt.want {
				t.Fatalf("%d counters, want %d", got, tt.want)
			}
		})
	}
}

func TestMemoryKeysAreShortAndDistinct(t *testing.T) {
	long := strings.Repeat("k", maxMemoryKeyLen)
	for name, keys := range map[string][2]string{
		"keys up to the bound are kept as they are": {long, long[1:]},
		"longer keys differing in the last byte":    {long + "a", long + "b"},
		"a long key and a short key":                {long + "a", hashedKeyPrefix + "a"},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := memoryKey([]byte(keys[0])), memoryKey([]byte(keys[1]))
			if bytes.Equal(a, b) {
				t.Fatalf("%q and %q share the memory key %q", keys[0], keys[1], a)
			}
			for _, k := range [][]byte{a, b} {
				if len(k) > maxMemoryKeyLen {
					t.Fatalf("memory key of %d bytes, want at most %d", len(k), maxMemoryKeyLen)
				}
			}
		})
	}
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	a := Limit{Key: []byte(long + "a"), Requests: 1, Period: time.Hour}
	b := Limit{Key: []byte(long + "b"), Requests: 1, Period: time.Hour}
	for _, l := range []Limit{a, b} {
		if res, err := m.Take(context.Background(), []Limit{l}, nil); err != nil || !res.Allowed {
			t.Fatalf("first request of a fresh long key: %+v, %v", res, err)
		}
	}
	if res, _ := m.Take(context.Background(), []Limit{a}, nil); res.Allowed {
		t.Fatal("a long key's counter did not count")
	}
}

func TestMemoryBytesPerCounter(t *testing.T) {
	// Map slack depends on where each map last grew: several counts, and
	// key lengths up to and beyond maxMemoryKeyLen.
	for _, keyLen := range []int{8, 100, maxMemoryKeyLen, 2 * maxMemoryKeyLen} {
		for _, n := range []int{40_000, 65_000, 130_000} {
			limits := make([]Limit, n)
			var accounted int64
			for i := range limits {
				limits[i] = Limit{Key: fmt.Appendf(nil, "%0*d", keyLen, i), Requests: 10, Period: time.Hour}
				accounted += counterBytes(len(memoryKey(limits[i].Key)))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m := NewMemory(MemoryOptions{SweepInterval: -1, MaxKeys: -1, MaxBytes: -1})
			for i := range limits {
				if _, err := m.Take(context.Background(), limits[i:i+1], nil); err != nil {
					t.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			var counted int64
			for i := range m.shards {
				counted += m.shards[i].bytes
			}
			if counted != accounted {
				t.Errorf("keys of %d bytes, %d counters: the store counts %d bytes, want %d", keyLen, n, counted, accounted)
			}
			if heap > accounted {
				t.Errorf("keys of %d bytes, %d counters: %d bytes of heap (%.1f each), more than the %d counted: MaxBytes does not bound memory",
					keyLen, n, heap, float64(heap)/float64(n), accounted)
			}
			runtime.KeepAlive(m)
			runtime.KeepAlive(limits) // only the store's heap counts
		}
	}
}

// TestMemoryChargesWithoutAllocating: a Take of counters that exist, with
// a Statuses buffer, allocates nothing; a new counter allocates its key
// (once the map and the TAT slots have grown to hold it).
func TestMemoryChargesWithoutAllocating(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryOptions{SweepInterval: -1, Shards: 1, Now: clock.Now})
	// Grow the map and the slots for 300 counters, then drop them.
	for i := range 300 {
		if _, err := m.Take(context.Background(), []Limit{{Key: fmt.Appendf(nil, "old-%d", i), Requests: 1, Period: time.Second}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(time.Second)
	m.Sweep()
	limits := []Limit{
		{Key: []byte("shop/tasks-api:per-user:u:alice"), Requests: 1_000_000, Period: time.Hour},
		{Key: []byte("shop/tasks-api:per-ip:192.0.2.1"), Requests: 1_000_000, Burst: 10_000, Period: time.Hour},
	}
	statuses := make([]Status, 0, 2)
	take := func() {
		if res, err := m.Take(context.Background(), limits, statuses); err != nil || !res.Allowed || &res.Statuses[0] != &statuses[:1][0] {
			t.Fatalf("Take: %+v, %v; want allowed, Statuses in the buffer", res, err)
		}
	}
	take()
	if n := testing.AllocsPerRun(100, take); n != 0 {
		t.Errorf("charging counters that exist: %v allocations, want 0", n)
	}
	fresh := 0
	if n := testing.AllocsPerRun(100, func() {
		fresh++
		limits[0].Key = fmt.Appendf(limits[0].Key[:0], "user-%06d", fresh)
		take()
	}); n != 1 {
		t.Errorf("charging a new counter: %v allocations, want 1 (its key)", n)
	}
}
