package ratelimit

import (
	"math"
	"testing"
	"time"
)

func TestGCRARescale(t *testing.T) {
	// 4 per hour: one every 15m, a window of 1h (in seconds here).
	g := gcra{interval: 900, window: 3600}
	const now = 1_000_000
	tests := map[string]struct {
		tat, interval, want int64
	}{
		"charged at the same interval":      {now + 1800, 900, now + 1800},
		"stored without an interval":        {now + 1800, 0, now + 1800},
		"refilled: a TAT in the past":       {now - 5, 1800, now - 5},
		"2 of a free tier's 2 are 2 of 4":   {now + 3600, 1800, now + 1800},
		"1 of 16 is 1 of 4":                 {now + 225, 225, now + 900},
		"a part of a request stays a part":  {now + 900, 1800, now + 450},
		"more than a window is one window":  {now + 3600, 60, now + 3600},
		"a product past 64 bits is clamped": {math.MaxInt64, 1, now + 3600},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := g.rescale(tc.tat, tc.interval, now); got != tc.want {
				t.Errorf("rescale(now%+d, %d) = now%+d, want now%+d", tc.tat-now, tc.interval, got-now, tc.want-now)
			}
		})
	}
}

func TestGCRARescaleKeepsRequestsSpent(t *testing.T) {
	// Every pair of limits: n requests spent at one are n at the other
	// (while both windows hold them), in the store's nanoseconds.
	limits := []Limit{
		{Requests: 2, Period: time.Hour},
		{Requests: 4, Period: time.Hour},
		{Requests: 1000, Period: 15 * time.Minute},
		{Requests: 7, Period: time.Second},
	}
	const now = int64(1e18)
	for _, from := range limits {
		for _, to := range limits {
			f, g := newGCRA(from, time.Nanosecond), newGCRA(to, time.Nanosecond)
			for n := int64(0); n <= min(from.Requests, to.Requests); n++ {
				if got := g.rescale(now+n*f.interval, f.interval, now); got != now+n*g.interval {
					t.Errorf("%d spent at %d/%s: rescaled to %d intervals of %d/%s, want %d",
						n, from.Requests, from.Period, (got-now)/g.interval, to.Requests, to.Period, n)
				}
			}
		}
	}
}
