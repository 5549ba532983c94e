package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/pkg/metrics"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// storeBudget bounds the time one decision spends on Redis (the default
// of Options.StoreBudget).
const storeBudget = 75 * time.Millisecond

// newQuotaStore builds the store named by opts.QuotaStore: memory, or Redis
// behind a Resilient wrapper that falls back per opts.OnStoreError.
// logLimit bounds the lines the store logs per request (nil: the store's
// default).
func newQuotaStore(opts Options, m *metrics.Metrics, log *slog.Logger, logLimit *logging.Limiter) (quotaStore, error) {
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
	primary, err := ratelimit.NewRedis(ratelimit.RedisOptions{Client: client, Logger: log, LogLimit: logLimit})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	fallback := ratelimit.NewMemory(ratelimit.MemoryOptions{MaxBytes: opts.MemoryStoreMaxBytes})
	budget := opts.StoreBudget
	if budget <= 0 {
		budget = storeBudget
	}
	resilient, err := ratelimit.NewResilient(primary, fallback, ratelimit.ResilientOptions{
		OnError: onError,
		// Leave room within the 100 ms a check may wait on Redis for the
		// rest of the decision and the fallback.
		Budget:     budget,
		Logger:     log,
		Registerer: m.Registry,
	})
	if err != nil {
		primary.Close()
		client.Close()
		fallback.Close()
		return nil, err
	}
	store := &redisStore{Resilient: resilient, primary: primary, client: client, fallback: fallback}
	store.warm(log)
	return store, nil
}

// memoryStore is always up.
type memoryStore struct{ *ratelimit.Memory }

func (memoryStore) Up() bool                   { return true }
func (memoryStore) Err() error                 { return nil }
func (memoryStore) Ping(context.Context) error { return nil }

type redisStore struct {
	*ratelimit.Resilient
	primary  *ratelimit.Redis
	client   redis.UniversalClient
	fallback *ratelimit.Memory

	stopWarm func()
	warmed   chan struct{} // closed when the warm-up has ended
}

// warmTimeout bounds the warm-up at start.
const warmTimeout = 5 * time.Second

// warm loads the scripts and connects in the background (Redis.Warm), so
// that a burst of checks right after start does not find the store cold.
// Serving never waits for it: a Redis that is down at start is the
// breaker's business.
func (r *redisStore) warm(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), warmTimeout)
	r.stopWarm, r.warmed = cancel, make(chan struct{})
	go func() {
		defer close(r.warmed)
		defer cancel()
		if err := r.primary.Warm(ctx); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
			log.Warn("quota store warm-up failed; the first checks will connect and load the scripts", "error", err)
		}
	}()
}

// Close stops the warm-up, then closes the Redis store before its client.
func (r *redisStore) Close() error {
	r.stopWarm()
	<-r.warmed
	r.fallback.Close()
	r.primary.Close()
	return r.client.Close()
}

// pingInterval is how often the quota store is pinged. With the breaker's
// three consecutive failures, an outage shows within about 1.5 s (SPEC:
// 5 s) with or without traffic, and a recovery within the breaker's 1 s
// cooldown and one interval.
const pingInterval = 500 * time.Millisecond

// pingEvery pings the store at once and then every interval until ctx
// ends, so that its health (/readyz and tollgate_quota_store_up) follows
// the store whether or not requests arrive, and the store is not reported
// up before it was ever reached. Ping goes through the store's breaker,
// so a failed ping counts as a failed call and, after the cooldown, a ping
// is the probe that closes the breaker.
func pingEvery(ctx context.Context, store quotaStore, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		_ = store.Ping(ctx) // the store logs transitions; /readyz shows its error
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
