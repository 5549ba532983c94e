package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/internal/testlog"
)

// newRedisStore returns a Redis store with its own client, built by
// NewClient as tollgate builds it from flags.
func newRedisStore(t testing.TB, o ClientOptions) *Redis {
	t.Helper()
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return newRedisStoreOn(t, c)
}

// newRedisStoreOn returns a Redis store on c, which it closes after the
// store.
func newRedisStoreOn(t testing.TB, c redis.UniversalClient) *Redis {
	t.Helper()
	t.Cleanup(func() { _ = c.Close() })
	r, err := NewRedis(RedisOptions{Client: c})
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// flushScripts runs SCRIPT FLUSH on every server of r.
func flushScripts(t *testing.T, r *Redis) {
	t.Helper()
	flush := func(ctx context.Context, c *redis.Client) error { return c.ScriptFlush(ctx).Err() }
	var err error
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(context.Background(), flush)
	} else {
		err = flush(context.Background(), r.client.(*redis.Client))
	}
	if err != nil {
		t.Fatal(err)
	}
}

func mustTake(t *testing.T, s Store, limits ...Limit) Result {
	t.Helper()
	res, err := s.Take(context.Background(), limits, nil)
	if err != nil {
		t.Fatalf("Take: %v", err)
	}
	return res
}

// keysInDistinctSlots returns n keys whose counters live in n different
// hash slots.
func keysInDistinctSlots(r *Redis, n int) []string {
	seen := map[int]bool{}
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("shop/api:per-user:u:user-%d", i)
		if s := hashSlot(r.redisKey([]byte(k))); !seen[s] {
			seen[s] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// redisTargets are the two deployments the store supports.
func redisTargets(t *testing.T) map[string]ClientOptions {
	return map[string]ClientOptions{
		"single server":    {Addr: redistest.StartServer(t).Addr},
		"3-master cluster": {ClusterAddrs: redistest.StartCluster(t, 3).Addrs},
	}
}

func TestRedis(t *testing.T) {
	for target, opts := range redisTargets(t) {
		t.Run(target, func(t *testing.T) {
			t.Run("three stores with separate clients count exactly", func(t *testing.T) {
				patient := opts
				patient.Timeout = time.Minute // see takeConcurrently
				stores := []Store{newRedisStore(t, patient), newRedisStore(t, patient), newRedisStore(t, patient)}
				limit := Limit{Key: []byte("shop/tasks-api:per-user:u:iss|exact"), Requests: 20, Period: time.Hour}
				if got := takeConcurrently(t, stores, 90, []Limit{limit}); got != 20 {
					t.Fatalf("allowed %d of 90, want exactly 20", got)
				}
			})
			t.Run("a burst is allowed, then denied with Retry-After", func(t *testing.T) {
				r := newRedisStore(t, opts)
				l := Limit{Key: []byte("burst"), Requests: 3, Period: time.Hour}
				for want := int64(2); want >= 0; want-- {
					res := mustTake(t, r, l)
					s := res.Statuses[0]
					if !res.Allowed || !s.Allowed || s.Remaining != want || s.Limit != 3 {
						t.Fatalf("take: got %+v, want allowed with %d remaining", res, want)
					}
					if wantReset := time.Duration(3-want) * 20 * time.Minute; s.Reset > wantReset || s.Reset < wantReset-time.Minute {
						t.Fatalf("reset %s, want about %s", s.Reset, wantReset)
					}
				}
				res := mustTake(t, r, l)
				s := res.Statuses[0]
				if res.Allowed || s.Allowed || s.Remaining != 0 {
					t.Fatalf("4th take: got %+v, want denied", res)
				}
				if s.RetryAfter > 20*time.Minute || s.RetryAfter < 19*time.Minute {
					t.Fatalf("retry after %s, want about 20m", s.RetryAfter)
				}
			})
			t.Run("a burst smaller than requests allows burst at once, then one per interval", func(t *testing.T) {
				r := newRedisStore(t, opts)
				l := Limit{Key: []byte("small-burst"), Requests: 100, Burst: 3, Period: time.Hour} // one every 36s
				for want := int64(2); want >= 0; want-- {
					res := mustTake(t, r, l)
					s := res.Statuses[0]
					if !res.Allowed || s.Remaining != want || s.Limit != 100 {
						t.Fatalf("take: got %+v, want allowed with %d remaining of the burst, limit 100", res, want)
					}
					if wantReset := time.Duration(3-want) * 36 * time.Second; s.Reset > wantReset || s.Reset < wantReset-5*time.Second {
						t.Fatalf("reset %s, want about %s", s.Reset, wantReset)
					}
				}
				res := mustTake(t, r, l)
				if s := res.Statuses[0]; res.Allowed || s.RetryAfter > 36*time.Second || s.RetryAfter < 31*time.Second {
					t.Fatalf("4th take: got %+v, want denied, retry after about 36s", res)
				}
			})
			t.Run("a smaller burst for a key (a tier change) keeps its counter", func(t *testing.T) {
				r := newRedisStore(t, opts)
				l := Limit{Key: []byte("tier-burst"), Requests: 10, Period: time.Hour} // one every 6m
				for range 5 {
					mustTake(t, r, l) // full again in 30m
				}
				small := l
				small.Burst = 3 // window 18m: the counter is clamped to it, and denies
				if res := mustTake(t, r, small); res.Allowed || res.Statuses[0].RetryAfter > 6*time.Minute || res.Statuses[0].RetryAfter < 5*time.Minute {
					t.Fatalf("burst 3 after 5 requests: got %+v, want denied, retry after about 6m", res)
				}
				if got := mustTake(t, r, l).Statuses[0].Remaining; got != 4 {
					t.Fatalf("remaining %d after the denial, want 4 (same counter, nothing charged)", got)
				}
			})
			t.Run("a tier change keeps the requests spent", func(t *testing.T) {
				r := newRedisStore(t, opts)
				free := Limit{Key: []byte("tier-spent"), Requests: 2, Period: time.Hour}
				premium := Limit{Key: []byte("tier-spent"), Requests: 4, Period: time.Hour}
				mustTake(t, r, free)
				mustTake(t, r, free)
				if res := mustTake(t, r, free); res.Allowed {
					t.Fatalf("third free request: %+v, want denied", res)
				}
				// 2 of 4 spent: premium allows exactly 2 more.
				for _, want := range []int64{1, 0} {
					if res := mustTake(t, r, premium); !res.Allowed || res.Statuses[0].Remaining != want {
						t.Fatalf("premium after 2 free: %+v, want allowed with %d remaining", res, want)
					}
				}
				if res := mustTake(t, r, premium); res.Allowed {
					t.Fatalf("fifth request: %+v, want denied", res)
				}
				// 4 spent are more than the free tier's 2: full, for one
				// free interval (30m).
				res := mustTake(t, r, free)
				if st := res.Statuses[0]; res.Allowed || st.RetryAfter > 30*time.Minute || st.RetryAfter < 29*time.Minute {
					t.Fatalf("free after 4 premium: %+v, want denied, retry after about 30m", res)
				}
			})
			t.Run("a counter stored as a bare TAT counts at the request's interval", func(t *testing.T) {
				// Earlier versions stored the TAT alone: a rolling upgrade
				// reads their counters as charged at this request's interval.
				r := newRedisStore(t, opts)
				l := Limit{Key: []byte("bare-tat"), Requests: 4, Period: time.Hour} // one every 15m
				ctx := context.Background()
				now, err := r.client.Time(ctx).Result()
				if err != nil {
					t.Fatal(err)
				}
				bare := now.Add(30 * time.Minute).UnixMicro() // 2 of 4 spent
				if err := r.client.Set(ctx, r.redisKey(l.Key), bare, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
				if res := mustTake(t, r, l); !res.Allowed || res.Statuses[0].Remaining != 1 {
					t.Fatalf("take over a bare TAT 30m ahead: %+v, want allowed with 1 remaining", res)
				}
			})
			t.Run("the longest window counts exactly", func(t *testing.T) {
				r := newRedisStore(t, opts)
				// The window is maxWindow: a drained counter's TAT is 85 years
				// ahead, about 4.4e15 µs since 1970, where Lua's numbers must
				// still be exact integers.
				l := Limit{Key: []byte("longest"), Requests: 1, Burst: 1000, Period: 744 * time.Hour}
				tat := func() int64 {
					v, err := r.client.Get(context.Background(), r.redisKey(l.Key)).Result()
					if err != nil {
						t.Fatal(err)
					}
					tat, interval, ok := strings.Cut(v, ":")
					if want := fmt.Sprint((744 * time.Hour).Microseconds()); !ok || interval != want {
						t.Fatalf("counter %q, want TAT:%s", v, want)
					}
					n, err := strconv.ParseInt(tat, 10, 64)
					if err != nil {
						t.Fatal(err)
					}
					return n
				}
				var first int64
				for want := int64(999); want >= 0; want-- {
					if res := mustTake(t, r, l); !res.Allowed || res.Statuses[0].Remaining != want {
						t.Fatalf("got %+v, want allowed with %d remaining", res, want)
					}
					if want == 999 {
						first = tat()
					}
				}
				if got, want := tat()-first, 999*(744*time.Hour).Microseconds(); got != want {
					t.Fatalf("TAT moved by %d µs over 999 requests, want exactly %d", got, want)
				}
				if res := mustTake(t, r, l); res.Allowed {
					t.Fatalf("request 1001: %+v, want denied", res)
				}
			})
			t.Run("a denial consumes nothing from any limit", func(t *testing.T) {
				r := newRedisStore(t, opts)
				keys := keysInDistinctSlots(r, 2)
				loose := Limit{Key: []byte(keys[0]), Requests: 5, Period: time.Hour}
				tight := Limit{Key: []byte(keys[1]), Requests: 1, Period: time.Hour}
				mustTake(t, r, tight)
				// loose first: on the cluster it is charged, then refunded;
				// loose last: it is only reported.
				for _, limits := range [][]Limit{{loose, tight}, {tight, loose}, {loose, tight}} {
					res := mustTake(t, r, limits...)
					if res.Allowed {
						t.Fatalf("take %v: allowed, want denied by the tight limit", limits)
					}
					for i, l := range limits {
						if bytes.Equal(l.Key, loose.Key) && (res.Statuses[i].Remaining != 5 || !res.Statuses[i].Allowed) {
							t.Fatalf("loose status %+v, want 5 remaining and allowed alone", res.Statuses[i])
						}
					}
				}
				if got := mustTake(t, r, loose).Statuses[0].Remaining; got != 4 {
					t.Fatalf("loose remaining after denials: %d, want 4 (nothing consumed)", got)
				}
			})
			t.Run("raising load on another key does not change a denied key", func(t *testing.T) {
				r := newRedisStore(t, opts)
				mine := Limit{Key: []byte("mine"), Requests: 2, Period: time.Hour}
				mustTake(t, r, mine)
				mustTake(t, r, mine)
				before := mustTake(t, r, mine)
				for range 10 {
					mustTake(t, r, Limit{Key: []byte("other"), Requests: 5, Period: time.Hour})
				}
				after := mustTake(t, r, mine)
				if before.Allowed || after.Allowed || after.Statuses[0].Remaining != 0 {
					t.Fatalf("before %+v after %+v, want both denied with 0 remaining", before, after)
				}
				if d := after.Statuses[0].Reset - before.Statuses[0].Reset; d > 0 {
					t.Fatalf("a denied key's reset grew by %s: denials consumed quota", d)
				}
			})
			t.Run("counters carry a TTL until they are full again", func(t *testing.T) {
				r := newRedisStore(t, opts)
				mustTake(t, r, Limit{Key: []byte("ttl"), Requests: 10, Period: time.Minute})
				mustTake(t, r, Limit{Key: []byte("ttl"), Requests: 10, Period: time.Minute})
				ttl, err := r.client.PTTL(context.Background(), r.redisKey([]byte("ttl"))).Result()
				if err != nil {
					t.Fatal(err)
				}
				if ttl <= 11*time.Second || ttl > 12*time.Second {
					t.Fatalf("PTTL %s, want just under 12s (two intervals of 6s)", ttl)
				}
			})
			t.Run("keys with braces and long keys are distinct counters", func(t *testing.T) {
				r := newRedisStore(t, opts)
				long := strings.Repeat("x", 300)
				keys := []string{"h:a{b}", "h:a%7Bb%7D", "h:}{", "h:%", long, long + "y"}
				for _, k := range keys {
					if res := mustTake(t, r, Limit{Key: []byte(k), Requests: 1, Period: time.Hour}); !res.Allowed {
						t.Fatalf("key %.20q: denied, want its own fresh counter", k)
					}
				}
				// Different slots in one decision: runs on the cluster too.
				limits := make([]Limit, len(keys))
				for i, k := range keys {
					limits[i] = Limit{Key: []byte(k), Requests: 2, Period: time.Hour}
				}
				for i, s := range mustTake(t, r, limits...).Statuses {
					if s.Remaining != 0 {
						t.Fatalf("key %.20q: %d remaining, want 0", keys[i], s.Remaining)
					}
				}
			})
			t.Run("a lowered limit waits at most one new interval", func(t *testing.T) {
				r := newRedisStore(t, opts)
				mustTake(t, r, Limit{Key: []byte("tier"), Requests: 1, Period: 24 * time.Hour})
				res := mustTake(t, r, Limit{Key: []byte("tier"), Requests: 1, Period: time.Minute})
				if res.Allowed || res.Statuses[0].RetryAfter > time.Minute {
					t.Fatalf("got %+v, want denied with retry after <= 1m", res)
				}
			})
			t.Run("scripts are reloaded after SCRIPT FLUSH", func(t *testing.T) {
				r := newRedisStore(t, opts)
				mustTake(t, r, Limit{Key: []byte("flush"), Requests: 2, Period: time.Hour})
				flushScripts(t, r)
				if got := mustTake(t, r, Limit{Key: []byte("flush"), Requests: 2, Period: time.Hour}).Statuses[0].Remaining; got != 0 {
					t.Fatalf("remaining %d after SCRIPT FLUSH, want 0", got)
				}
			})
		})
	}
}

func TestRedisKeyEscaping(t *testing.T) {
	r, err := NewRedis(RedisOptions{Client: redis.NewClient(&redis.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	tests := map[string]struct{ key, want string }{
		"a plain key is its own tag": {"shop/api:per-ip:10.0.0.1", "tollgate:{shop/api:per-ip:10.0.0.1}"},
		"braces are escaped":         {"a{b}c", "tollgate:{a%7Bb%7Dc}"},
		"the escape is escaped":      {"a%7B", "tollgate:{a%257B}"},
		"a long key is hashed":       {strings.Repeat("k", 201), "tollgate:{%H"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := r.redisKey([]byte(tt.key)); !strings.HasPrefix(got, tt.want) || strings.Count(got, "{") != 1 || strings.Count(got, "}") != 1 {
				t.Fatalf("redisKey(%.20q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestRedisWarmLoadsTheScriptsOnEveryServer(t *testing.T) {
	for target, opts := range redisTargets(t) {
		t.Run(target, func(t *testing.T) {
			r := newRedisStore(t, opts)
			if err := r.Warm(context.Background()); err != nil {
				t.Fatalf("Warm: %v", err)
			}
			var servers []ClientOptions
			if opts.Addr != "" {
				servers = []ClientOptions{opts}
			}
			for _, a := range opts.ClusterAddrs {
				servers = append(servers, ClientOptions{Addr: a})
			}
			for _, s := range servers {
				c := redis.NewClient(&redis.Options{Addr: s.Addr})
				exists, err := c.ScriptExists(context.Background(), r.scripts.take.Hash(), r.scripts.refund.Hash()).Result()
				c.Close()
				if err != nil || len(exists) != 2 || !exists[0] || !exists[1] {
					t.Fatalf("%s: SCRIPT EXISTS take refund = %v, %v; want both loaded", s.Addr, exists, err)
				}
			}
		})
	}
}

// TestRedisFailedRefundsLogBoundedLines: with one master of a cluster
// hung, every decision that was charged on another master and then timed
// out on the hung one fails its refund (its context has ended). A flood of
// them logs no more lines than LogLimit lets through; the rest are counted
// as suppressed.
func TestRedisFailedRefundsLogBoundedLines(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	c, err := NewClient(ClientOptions{ClusterAddrs: cluster.Addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	var logs testlog.Buffer
	const burst = 3
	limiter := logging.NewLimiter(logging.LimiterOptions{Burst: burst, Every: time.Hour})
	r, err := NewRedis(RedisOptions{Client: c, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), LogLimit: limiter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })

	// The first limit on one master, the second on another, which hangs.
	master := func(key string) string {
		m, err := c.(*redis.ClusterClient).MasterForKey(context.Background(), r.redisKey([]byte(key)))
		if err != nil {
			t.Fatal(err)
		}
		return m.Options().Addr
	}
	keys := keysInDistinctSlots(r, 16)
	first, second := keys[0], ""
	for _, k := range keys[1:] {
		if master(k) != master(first) {
			second = k
			break
		}
	}
	if second == "" {
		t.Fatal("16 slots on one master")
	}
	limits := []Limit{{Key: []byte(first), Requests: 1000, Period: time.Hour}, {Key: []byte(second), Requests: 1000, Period: time.Hour}}
	mustTake(t, r, limits...) // loads the scripts
	var hung *redistest.Server
	for _, s := range cluster.Servers {
		if s.Addr == master(second) {
			hung = s
		}
	}
	hung.Pause()
	t.Cleanup(hung.Resume) // before Close, which waits for the pipelines

	// One after the other: concurrent decisions would queue for the
	// pipelines that wait on the hung master, and time out before being
	// charged anywhere.
	const takes = 20
	for range takes {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := r.Take(ctx, limits, nil)
		cancel()
		if err == nil {
			t.Fatal("a Take succeeded with a master hung")
		}
	}
	lines := strings.Count(logs.String(), msgRefundFailed)
	var suppressed int64
	limiter.Suppressed(func(_ string, n int64) { suppressed += n })
	failed := int64(lines) + suppressed
	if failed < takes/2 {
		t.Fatalf("%d refunds failed of %d decisions, want most: the test did not flood", failed, takes)
	}
	if lines != min(burst, int(failed)) {
		t.Fatalf("%d refund-failure lines for %d failed refunds, want %d (the rest suppressed):\n%s", lines, failed, min(burst, int(failed)), logs.String())
	}
}
