package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pipelining. Each take.lua run is one round trip, and at high concurrency
// the write and read syscalls on both sides of it cost more than the script.
// So the decisions that need one script run are queued, and a few loop
// goroutines each send everything queued at that moment as one pipeline of
// EVALSHA commands. There is no time window: an idle loop takes a lone
// request at once, and batches form only while the loops are busy with the
// previous pipelines, so batching adds no latency at low load.
//
// Each script still runs atomically on its own; a pipeline is not a
// transaction and needs none, since every decision is one script. Like a
// single command, a pipeline whose connection breaks is retried by go-redis
// (MaxRetries), so a script that ran before the break can run again, as
// before pipelining.
const (
	// pipelineLoops is the number of pipelines in flight at once. One
	// keeps Redis idle while a batch travels; a few overlap the round trips.
	pipelineLoops = 3
	// maxPipeline caps the commands of one pipeline.
	maxPipeline = 128
	// maxPipelineWait bounds a pipeline: it ends at the last deadline of
	// its callers, or this long after it starts if that is sooner. No
	// decision may wait longer on the store (see MaxBudget).
	maxPipelineWait = MaxBudget
	// queueSize bounds the queue; a caller waits (within its ctx) for room.
	queueSize = 1024
)

// errClosed is returned by Take after Close.
var errClosed = errors.New("ratelimit: redis store closed")

// call is one queued script run and, once done is signalled, its outcome.
type call struct {
	ctx   context.Context
	keys  []string
	args  []any
	reply []int64
	err   error
	done  chan struct{} // buffered: the loop never waits for the caller
}

// batcher pipelines take.lua runs of concurrent callers.
type batcher struct {
	client  redis.UniversalClient
	script  *redis.Script
	src     string
	maxWait time.Duration // maxPipelineWait; longer only in tests

	queue     chan *call
	quit      chan struct{}
	closeOnce sync.Once
	loops     sync.WaitGroup

	// pipelines counts the pipelines sent (NOSCRIPT retries excluded) and
	// inFlight the loops sending one now, for tests.
	pipelines atomic.Int64
	inFlight  atomic.Int32
}

func newBatcher(client redis.UniversalClient, script *redis.Script, src string) *batcher {
	return &batcher{
		client:  client,
		script:  script,
		src:     src,
		maxWait: maxPipelineWait,
		queue:   make(chan *call, queueSize),
		quit:    make(chan struct{}),
	}
}

// start starts n loops.
func (b *batcher) start(n int) {
	for range n {
		b.loops.Go(b.loop)
	}
}

// close stops the loops after their pipelines in flight, and makes every
// waiting and later caller return errClosed.
func (b *batcher) close() {
	b.closeOnce.Do(func() { close(b.quit) })
	b.loops.Wait()
}

func (b *batcher) closed() bool {
	select {
	case <-b.quit:
		return true
	default:
		return false
	}
}

// run runs the script with keys and args in the next pipeline and returns
// its reply. It returns when ctx ends, whether the call is still queued or
// already sent; a call whose ctx ended before it was sent is dropped, so it
// charges nothing.
func (b *batcher) run(ctx context.Context, keys []string, args []any) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &call{ctx: ctx, keys: keys, args: args, done: make(chan struct{}, 1)}
	select {
	case b.queue <- c:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.quit:
		return nil, errClosed
	}
	select {
	case <-c.done:
		return c.reply, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.quit:
		return nil, errClosed
	}
}

// loop sends pipelines until close: it waits for one call, takes every call
// queued by then (up to maxPipeline), and sends them together.
func (b *batcher) loop() {
	pipe := b.client.Pipeline()
	batch := make([]*call, 0, maxPipeline)
	cmds := make([]*redis.IntSliceCmd, 0, maxPipeline)
	for {
		select {
		case c := <-b.queue:
			batch = append(batch, c)
		case <-b.quit:
			return
		}
	fill:
		for len(batch) < maxPipeline {
			select {
			case c := <-b.queue:
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.send(pipe, batch, cmds)
		clear(batch)
		batch = batch[:0]
	}
}

// send runs one batch as a pipeline and hands each caller its result.
func (b *batcher) send(pipe redis.Pipeliner, batch []*call, cmds []*redis.IntSliceCmd) {
	now := time.Now()
	deadline := now.Add(b.maxWait)
	var latest time.Time
	live := batch[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			// The caller has left: do not charge for it.
			c.err = err
			c.done <- struct{}{}
			continue
		}
		live = append(live, c)
		if d, ok := c.ctx.Deadline(); !ok {
			latest = deadline
		} else if d.After(latest) {
			latest = d
		}
	}
	if len(live) == 0 {
		return
	}
	// The callers with earlier deadlines leave on their own; the pipeline
	// serves the others until the last deadline, within maxWait.
	if latest.After(deadline) {
		latest = deadline
	}
	ctx, cancel := context.WithDeadline(context.Background(), latest)
	defer cancel()

	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	b.pipelines.Add(1)
	cmds = cmds[:0]
	hash := b.script.Hash()
	for _, c := range live {
		cmds = append(cmds, evalCmd(ctx, pipe, "evalsha", hash, c))
	}
	// Exec's error is the first command's; each command carries its own.
	_, _ = pipe.Exec(ctx)

	// EVALSHA fails with NOSCRIPT after a restart, SCRIPT FLUSH or failover;
	// EVAL runs the script and loads it for the next pipelines.
	retried := false
	for i, c := range live {
		if redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
			cmds[i] = evalCmd(ctx, pipe, "eval", b.src, c)
			retried = true
		}
	}
	if retried {
		_, _ = pipe.Exec(ctx)
	}

	for i, c := range live {
		c.reply, c.err = cmds[i].Result()
		c.done <- struct{}{}
	}
	clear(cmds)
}

// evalCmd queues EVAL or EVALSHA (name) of script (source or hash) for c in
// pipe. Its reply, an array of integers, is read straight into []int64.
func evalCmd(ctx context.Context, pipe redis.Pipeliner, name, script string, c *call) *redis.IntSliceCmd {
	args := make([]any, 0, 3+len(c.keys)+len(c.args))
	args = append(args, name, script, len(c.keys))
	for _, k := range c.keys {
		args = append(args, k)
	}
	args = append(args, c.args...)
	cmd := redis.NewIntSliceCmd(ctx, args...)
	_ = pipe.Process(ctx, cmd) // queues; errors come with Exec
	return cmd
}
