package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

func TestRedisPipelinesConcurrentTakesExactly(t *testing.T) {
	for target, opts := range redisTargets(t) {
		t.Run(target, func(t *testing.T) {
			r := newRedisStore(t, opts)
			limit := Limit{Key: []byte("shop/tasks-api:per-user:u:iss|batched"), Requests: 20, Period: time.Hour}
			if got := takeConcurrently(t, []Store{r}, 90, []Limit{limit}); got != 20 {
				t.Fatalf("allowed %d of 90, want exactly 20", got)
			}
			pipelines := r.batch.pipelines.Load()
			t.Logf("90 takes in %d pipelines", pipelines)
			if pipelines < 1 || pipelines >= 90 {
				t.Fatalf("90 concurrent takes went in %d pipelines, want 1 to 89", pipelines)
			}
		})
	}
}

// A caller whose ctx ends while its call waits in the queue returns at once,
// and its call is never sent, so it charges nothing.
func TestRedisQueuedCallerLeavesWhenItsContextEnds(t *testing.T) {
	srv := redistest.StartServer(t)
	c, err := NewClient(ClientOptions{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r, err := newRedis(RedisOptions{Client: c}) // no loops yet: every call stays queued
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	otherCaller(t, r)
	limit := Limit{Key: []byte("queued"), Requests: 3, Period: time.Hour}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Take(ctx, []Limit{limit}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued Take with an expiring ctx: %v, want context.DeadlineExceeded", err)
	}
	if n := len(r.batch.queue); n != 1 {
		t.Fatalf("%d calls queued, want the abandoned one", n)
	}

	r.batch.start(1)
	res := mustTake(t, r, limit)
	if !res.Allowed || res.Statuses[0].Remaining != 2 {
		t.Fatalf("first served Take: %+v, want allowed with 2 remaining (the abandoned call charged nothing)", res)
	}
	if got := r.batch.pipelines.Load(); got != 1 {
		t.Fatalf("%d pipelines sent, want 1: the abandoned call is not sent", got)
	}
}

// With every loop waiting on a hung Redis, a queued caller still leaves when
// its ctx ends, long before the pipelines in flight do.
func TestRedisQueuedCallerLeavesWhileRedisHangs(t *testing.T) {
	srv, r := patientRedis(t)
	r.batch.start(pipelineLoops)
	t.Cleanup(func() { _ = r.Close() })
	otherCaller(t, r)
	mustTake(t, r, Limit{Key: []byte("warm-up"), Requests: 1, Period: time.Hour}) // loads the script

	srv.Pause()
	t.Cleanup(srv.Resume) // runs before Close, which waits for the pipelines
	blocked := Limit{Key: []byte("blocked"), Requests: 10, Period: time.Hour}
	var returned atomic.Int32
	var blockers sync.WaitGroup
	errs := make(chan error, pipelineLoops)
	for i := range pipelineLoops {
		blockers.Go(func() {
			defer returned.Add(1)
			if res, err := r.Take(context.Background(), []Limit{blocked}, nil); err != nil || !res.Allowed {
				errs <- fmt.Errorf("blocked take: %+v, %v; want allowed after the resume", res, err)
			}
		})
		// One at a time, so that each takes a loop of its own.
		waitFor(t, func() bool { return r.batch.inFlight.Load() == int32(i+1) })
	}

	queued := Limit{Key: []byte("queued"), Requests: 3, Period: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Take(ctx, []Limit{queued}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued Take with an expiring ctx: %v, want context.DeadlineExceeded", err)
	}
	if n := returned.Load(); n != 0 {
		t.Fatalf("%d blocked takes returned before the queued caller, want 0", n)
	}

	srv.Resume()
	blockers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := mustTake(t, r, queued).Statuses[0].Remaining; got != 2 {
		t.Fatalf("queued key: %d remaining, want 2 (the abandoned call charged nothing)", got)
	}
	if got := mustTake(t, r, blocked).Statuses[0].Remaining; got != 10-pipelineLoops-1 {
		t.Fatalf("blocked key: %d remaining, want %d", got, 10-pipelineLoops-1)
	}
}

func TestRedisClose(t *testing.T) {
	srv := redistest.StartServer(t)
	c, err := NewClient(ClientOptions{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r, err := newRedis(RedisOptions{Client: c}) // no loops: the call stays queued
	if err != nil {
		t.Fatal(err)
	}
	otherCaller(t, r)
	limit := Limit{Key: []byte("closed"), Requests: 3, Period: time.Hour}
	errc := make(chan error, 1)
	go func() {
		_, err := r.Take(context.Background(), []Limit{limit}, nil)
		errc <- err
	}()
	waitFor(t, func() bool { return len(r.batch.queue) == 1 })
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, errClosed) {
		t.Fatalf("Take queued at Close: %v, want errClosed", err)
	}
	if _, err := r.Take(context.Background(), []Limit{limit}, nil); !errors.Is(err, errClosed) {
		t.Fatalf("Take after Close: %v, want errClosed", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// otherCaller makes r's batcher count one more caller waiting on the store
// for the rest of the test, so that every call is queued for a pipeline
// rather than run on its caller's goroutine.
func otherCaller(t *testing.T, r *Redis) {
	r.batch.pending.Add(1)
	t.Cleanup(func() { r.batch.pending.Add(-1) })
}

// TestRedisCallPaths runs decisions both ways a call can go: on its
// caller's goroutine when no other caller waits on the store, and in a
// pipeline otherwise. Both charge exactly and reload the script after
// SCRIPT FLUSH.
func TestRedisCallPaths(t *testing.T) {
	for target, opts := range redisTargets(t) {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, pipelined %v", target, pipelined), func(t *testing.T) {
				r := newRedisStore(t, opts)
				if pipelined {
					otherCaller(t, r)
				}
				limit := Limit{Key: fmt.Appendf(nil, "paths-%v", pipelined), Requests: 2, Period: time.Hour}
				for i, want := range []bool{true, true, false} {
					if i == 2 {
						flushScripts(t, r)
					}
					if res := mustTake(t, r, limit); res.Allowed != want {
						t.Fatalf("take %d: %+v, want allowed %v", i+1, res, want)
					}
				}
				directs, pipelines := r.batch.directs.Load(), r.batch.pipelines.Load()
				if pipelined && (directs != 0 || pipelines != 3) || !pipelined && (directs != 3 || pipelines != 0) {
					t.Fatalf("%d calls on the caller's goroutine, %d pipelines", directs, pipelines)
				}
			})
		}
	}
}

// A lone caller whose call hangs in Redis leaves when its ctx ends.
func TestRedisLoneCallerLeavesWhileRedisHangs(t *testing.T) {
	srv := redistest.StartServer(t)
	r := newRedisStore(t, ClientOptions{Addr: srv.Addr})
	mustTake(t, r, Limit{Key: []byte("warm-up"), Requests: 1, Period: time.Hour})
	srv.Pause()
	t.Cleanup(srv.Resume)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Take(ctx, []Limit{{Key: []byte("hung"), Requests: 3, Period: time.Hour}}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lone Take while Redis hangs: %v, want context.DeadlineExceeded", err)
	}
	if n := r.batch.directs.Load(); n != 2 {
		t.Fatalf("%d calls on the caller's goroutine, want 2", n)
	}
}

// waitFor polls cond until it holds, for at most 10s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
	}
}

// TestRedisCallSentAfterItsCallerLeftUsesItsOwnCopies: a Take whose call
// is in a pipeline when its ctx ends returns, and its caller reuses the
// Limit.Key bytes and the Statuses buffer (as the decision core does with
// its pooled scratch). The pipeline, which finishes later, charges the key
// the caller gave, and nothing writes the buffer after Take returned. The
// script is not loaded yet, so the pipeline writes the call a second time
// (EVAL after NOSCRIPT) once the caller has left: a call that kept the
// caller's bytes would then charge the reused key.
func TestRedisCallSentAfterItsCallerLeftUsesItsOwnCopies(t *testing.T) {
	srv, r := patientRedis(t) // no loops yet: calls stay queued
	t.Cleanup(func() { _ = r.Close() })
	otherCaller(t, r)

	srv.Pause()
	t.Cleanup(srv.Resume) // runs before Close, which waits for the pipelines
	// A caller without a deadline keeps the pipeline going until Redis
	// answers.
	patient := make(chan error, 1)
	go func() {
		_, err := r.Take(context.Background(), []Limit{{Key: []byte("patient"), Requests: 10, Period: time.Hour}}, nil)
		patient <- err
	}()
	key := []byte("original")
	statuses := make([]Status, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	left := make(chan error, 1)
	go func() {
		_, err := r.Take(ctx, []Limit{{Key: key, Requests: 3, Period: time.Hour}}, statuses)
		left <- err
	}()
	waitFor(t, func() bool { return len(r.batch.queue) == 2 })
	r.batch.start(1)
	waitFor(t, func() bool { return r.batch.inFlight.Load() == 1 && len(r.batch.queue) == 0 })
	if err := <-left; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Take in a hung pipeline: %v, want context.DeadlineExceeded", err)
	}
	// The caller reuses its buffers while the pipeline still holds the call.
	copy(key, "reused!!")
	statuses[0] = Status{Limit: -1}

	srv.Resume()
	if err := <-patient; err != nil {
		t.Fatalf("patient Take: %v", err)
	}
	waitFor(t, func() bool { return r.batch.inFlight.Load() == 0 })
	for k, want := range map[string]int64{"original": 1, "reused!!": 0} {
		if n, err := r.client.Exists(context.Background(), r.redisKey([]byte(k))).Result(); err != nil || n != want {
			t.Errorf("counter %q exists: %d (%v), want %d", k, n, err, want)
		}
	}
	if statuses[0] != (Status{Limit: -1}) {
		t.Errorf("the Statuses buffer was written after Take returned: %+v", statuses[0])
	}
}

// patientRedis returns a Redis server and a store on it, without pipeline
// loops, whose client and pipelines wait far longer than any caller's ctx,
// so that only a caller's ctx can end its wait.
func patientRedis(t *testing.T) (*redistest.Server, *Redis) {
	t.Helper()
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{
		Addr:                  srv.Addr,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	r, err := newRedis(RedisOptions{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	r.batch.maxWait = 10 * time.Second
	return srv, r
}
