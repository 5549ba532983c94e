package logging_test

import (
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/testclock"
)

func TestLimiter(t *testing.T) {
	clock := testclock.New(time.Unix(1_000_000, 0))
	l := logging.NewLimiter(logging.LimiterOptions{Burst: 3, Every: time.Second, Now: clock.Now})
	allowed := func(key string, n int) int {
		got := 0
		for range n {
			if l.Allow(key) {
				got++
			}
		}
		return got
	}
	suppressed := func() map[string]int64 {
		m := map[string]int64{}
		l.Suppressed(func(key string, n int64) { m[key] = n })
		return m
	}
	if got := allowed("rate_limited", 100); got != 3 {
		t.Fatalf("a flood of 100 let %d lines through, want the burst of 3", got)
	}
	if got := allowed("expired", 2); got != 2 {
		t.Fatalf("another key shares the first one's budget: %d of 2 lines", got)
	}
	if got := suppressed(); len(got) != 1 || got["rate_limited"] != 97 {
		t.Fatalf("suppressed %v, want rate_limited: 97", got)
	}
	if got := suppressed(); len(got) != 0 {
		t.Fatalf("suppressed again %v, want the counts reset", got)
	}
	clock.Advance(time.Second)
	if got := allowed("rate_limited", 10); got != 1 {
		t.Fatalf("one interval later %d lines passed, want 1", got)
	}
	clock.Advance(time.Hour)
	if got := allowed("rate_limited", 10); got != 3 {
		t.Fatalf("after a quiet hour %d lines passed, want the burst of 3 (not more)", got)
	}
}

func TestLimiterAllowDoesNotAllocate(t *testing.T) {
	l := logging.NewLimiter(logging.LimiterOptions{})
	l.Allow("rate_limited")
	key := string([]byte("rate_limited"))
	if n := testing.AllocsPerRun(1000, func() { l.Allow(key) }); n != 0 {
		t.Errorf("%v allocations per Allow", n)
	}
}
