package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/pkg/metrics"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// storeBudget bounds the time one decision spends on Redis.
const storeBudget = 75 * time.Millisecond

// newQuotaStore builds the store named by opts.QuotaStore: memory, or Redis
// behind a Resilient wrapper that falls back per opts.OnStoreError.
func newQuotaStore(opts Options, m *metrics.Metrics, log *slog.Logger) (quotaStore, error) {
	switch opts.QuotaStore {
	case "", "memory":
		if err := ratelimit.RegisterUp(m.Registry); err != nil {
			return nil, err
		}
		return memoryStore{ratelimit.NewMemory(ratelimit.MemoryOptions{MaxBytes: opts.MemoryStoreMaxBytes})}, nil
	case "redis":
	default:
		return nil, fmt.Errorf("--quota-store %q: want memory or redis", opts.QuotaStore)
	}
	onError, err := ratelimit.ParseOnError(opts.OnStoreError)
	if err != nil {
		return nil, fmt.Errorf("--on-store-error: %w", err)
	}
	client, err := ratelimit.NewClient(opts.Redis)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	primary, err := ratelimit.NewRedis(ratelimit.RedisOptions{Client: client, Logger: log})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	fallback := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxBytes: opts.MemoryStoreMaxBytes})
	resilient, err := ratelimit.NewResilient(primary, fallback, ratelimit.ResilientOptions{
		OnError: onError,
		// Leave room within the 100 ms a check may wait on Redis for the
		// rest of the decision and the fallback.
		Budget:     storeBudget,
		Logger:     log,
		Registerer: m.Registry,
	})
	if err != nil {
		primary.Close()
		client.Close()
		fallback.Close()
		return nil, err
	}
	return &redisStore{Resilient: resilient, primary: primary, client: client, fallback: fallback}, nil
}

// memoryStore is always up.
type memoryStore struct{ *ratelimit.Memory }

func (memoryStore) Up() bool { return true }

type redisStore struct {
	*ratelimit.Resilient
	primary  *ratelimit.Redis
	client   redis.UniversalClient
	fallback *ratelimit.Memory
}

// Close closes the Redis store before its client.
func (r *redisStore) Close() error {
	r.fallback.Close()
	r.primary.Close()
	return r.client.Close()
}

// probeLimit is the counter that keeps checking a quota store that is down
// while no request arrives to do it; its limit is never reached.
var probeLimit = []ratelimit.Limit{{Key: "tollgate:probe", Requests: 1_000_000_000, Period: time.Hour}}

// probeWhileDown takes from the probe counter every interval while the
// store is down, so that its recovery shows in /readyz and the
// tollgate_quota_store_up gauge without waiting for traffic. The store's
// breaker decides whether a probe reaches Redis.
func probeWhileDown(ctx context.Context, store quotaStore, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !store.Up() {
				_, _ = store.Take(ctx, probeLimit)
			}
		}
	}
}
