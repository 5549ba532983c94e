package ratelimit

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// cpuTime returns the CPU time (user + system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRedisTakeSequential measures a lone decision at a time, as at
// low load (a round trip in flight at a time): its latency, and this
// process's CPU time per Take (redis-server's not included). "store" bounds
// each Take with a context of the caller's, as Resilient did before it
// handed the Redis store its budget as a deadline ("resilient", as serve
// runs it).
func BenchmarkRedisTakeSequential(b *testing.B) {
	srv := redistest.StartServer(b)
	r := newRedisStore(b, ClientOptions{Addr: srv.Addr})
	resilient, err := NewResilient(r, nil, ResilientOptions{OnError: OnErrorDeny})
	if err != nil {
		b.Fatal(err)
	}
	keys, ipKeys := benchKeys(1000, ""), benchKeys(1000, ":ip")
	ctx := context.Background()
	for name, take := range map[string]func(limits []Limit, statuses []Status) (Result, error){
		"store": func(limits []Limit, statuses []Status) (Result, error) {
			tctx, cancel := context.WithTimeout(ctx, MaxBudget)
			defer cancel()
			return r.Take(tctx, limits, statuses)
		},
		"resilient": func(limits []Limit, statuses []Status) (Result, error) {
			return resilient.Take(ctx, limits, statuses)
		},
	} {
		b.Run(name, func(b *testing.B) {
			limits := []Limit{{Requests: 1_000_000_000, Period: time.Hour}, {Requests: 1_000_000_000, Period: time.Hour}}
			var statuses [2]Status // reused, as the decision core does
			i := 0
			b.ReportAllocs()
			cpu0 := cpuTime(b)
			for b.Loop() {
				i++
				limits[0].Key, limits[1].Key = keys[i%len(keys)], ipKeys[(i*31+7)%len(keys)]
				res, err := take(limits, statuses[:])
				if err != nil || res.Degraded {
					b.Fatal(res, err)
				}
			}
			b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
