package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// benchKeys returns n realistic per-user keys, each followed by suffix.
func benchKeys(n int, suffix string) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "shop/tasks-api:per-user:u:https://id.example.com|user-%08d%s", i, suffix)
	}
	return keys
}

// benchTake runs Takes of one per-user limit over 10k users from
// concurrency goroutines (0: GOMAXPROCS) and reports decisions per second.
func benchTake(b *testing.B, s Store, concurrency int) {
	keys := benchKeys(10_000, "")
	if concurrency > 0 {
		b.SetParallelism(max(concurrency/runtime.GOMAXPROCS(0), 1))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 7919
		var statuses [1]Status // reused, as the decision core does
		for pb.Next() {
			i++
			l := Limit{Key: keys[i%len(keys)], Requests: 1_000_000, Period: time.Hour}
			if _, err := s.Take(context.Background(), []Limit{l}, statuses[:]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "takes/s")
}

// BenchmarkTake measures memory and Redis in one run, so their ratio comes
// from one process on one machine.
func BenchmarkTake(b *testing.B) {
	b.Run("memory/parallel", func(b *testing.B) {
		benchTake(b, NewMemory(MemoryOptions{SweepInterval: -1}), 0)
	})
	b.Run("memory/concurrency64", func(b *testing.B) {
		benchTake(b, NewMemory(MemoryOptions{SweepInterval: -1}), 64)
	})
	srv := redistest.StartServer(b)
	b.Run("redis/concurrency64", func(b *testing.B) {
		benchTake(b, newRedisStore(b, ClientOptions{Addr: srv.Addr}), 64)
	})
	b.Run("resilient-redis/concurrency64", func(b *testing.B) {
		r, err := NewResilient(newRedisStore(b, ClientOptions{Addr: srv.Addr}), nil, ResilientOptions{OnError: OnErrorDeny})
		if err != nil {
			b.Fatal(err)
		}
		benchTake(b, r, 64)
	})
}

// BenchmarkMemoryMultiLimit measures a decision with a per-user and a
// per-ip limit, which locks two shards.
func BenchmarkMemoryMultiLimit(b *testing.B) {
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	keys, ipKeys := benchKeys(10_000, ""), benchKeys(10_000, ":ip")
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 7919
		var statuses [2]Status
		for pb.Next() {
			i++
			limits := []Limit{
				{Key: keys[i%len(keys)], Requests: 1_000_000, Period: time.Hour},
				{Key: ipKeys[(i*31)%len(keys)], Requests: 1_000_000, Period: time.Hour},
			}
			if _, err := m.Take(context.Background(), limits, statuses[:]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkMemoryBytesPerKey reports the heap held per tracked counter,
// key included, measured with runtime.MemStats around inserting 100k keys.
func BenchmarkMemoryBytesPerKey(b *testing.B) {
	const n = 100_000
	keys := benchKeys(n, "")
	limits := make([][]Limit, n)
	for i, k := range keys {
		limits[i] = []Limit{{Key: k, Requests: 10, Period: time.Hour}}
	}
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMemory(MemoryOptions{SweepInterval: -1})
		for _, l := range limits {
			if _, err := m.Take(context.Background(), l, nil); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(perKey, "B/key")
	b.ReportMetric(float64(len(keys[0])), "keylen")
}
