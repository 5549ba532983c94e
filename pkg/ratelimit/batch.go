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
// previous pipelines, so batching adds no latency at low load. A caller
// that finds no other caller waiting on the store does not queue at all:
// it runs its call itself (direct), which saves the two goroutine switches
// and the pipeline's context that a lone call would otherwise cost.
//
// Each script still runs atomically on its own; a pipeline is not a
// transaction and needs none, since every decision is one script. A sender
// carries the round trips: on a single server the store's own connections
// (respConns, resp.go), on Redis Cluster go-redis's pipelines
// (pipelineSender). Either sends a pipeline whose connection broke once
// more, so a script that ran before the break can run again.
const (
	// pipelineLoops is the number of pipelines in flight at once. One
	// keeps Redis idle while a batch travels; a few overlap the round trips.
	pipelineLoops = 3
	// maxPipeline caps the commands of one pipeline.
	maxPipeline = 128
	// maxPipelineWait bounds a pipeline that serves a caller without a
	// deadline; otherwise a pipeline ends at the last deadline of its
	// callers, which Resilient sets to its budget.
	maxPipelineWait = MaxBudget
	// queueSize bounds the queue; a caller waits (within its ctx) for room.
	queueSize = 1024
)

// errClosed is returned by Take after Close.
var errClosed = errors.New("ratelimit: redis store closed")

// call is one run of take.lua and, once done is signalled, its outcome.
// Calls are recycled (callPool) by the caller that received done: from then
// on the loop no longer touches it.
type call struct {
	ctx context.Context
	// deadline, unless zero, ends the call besides ctx: a lone caller's
	// round trip takes it as is, a queued call gets a ctx that ends by it.
	deadline time.Time
	keys     []string
	nums     []int64 // ARGV: charge, then interval and window per key
	reply    []int64
	err      error
	done     chan struct{} // buffered: the loop never waits for the caller

	argBuf   [3 + 2*inlineLimits + 1 + 2*inlineLimits]any // see redisArgs
	numBuf   [1 + 2*inlineLimits]int64
	replyBuf [2 + inlineLimits]int64 // reply, when read by respConns
	// alone is the call as a batch of its own (direct): a slice of a local
	// array would escape through the sender's interface and allocate.
	alone [1]*call
}

// inlineLimits is the number of limits whose arguments fit a call without
// further allocation.
const inlineLimits = 4

// callPool recycles calls (see call).
var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1)} }}

// newTakeCall returns a call of take.lua over keys, one per limit (idx
// selects the limits of a slot group; nil selects all), charging when
// charge is set.
func newTakeCall(ctx context.Context, keys []string, limits []Limit, idx []int, charge bool) *call {
	c := callPool.Get().(*call)
	c.ctx, c.keys = ctx, keys
	n := len(keys)
	c.nums = c.numBuf[:0]
	if 1+2*n > len(c.numBuf) {
		c.nums = make([]int64, 0, 1+2*n)
	}
	c.nums = append(c.nums, int64(b2i(charge)))
	for k := range n {
		i := k
		if idx != nil {
			i = idx[k]
		}
		g := newGCRA(limits[i], time.Microsecond)
		c.nums = append(c.nums, g.interval, g.window)
	}
	return c
}

// redisArgs returns c's command for go-redis: cmd (EVALSHA or EVAL), the
// script (its hash or source), the number of keys, the keys, then ARGV.
// Every value but the first and the number of keys is a pointer, into
// c.keys and c.nums or to the sender's string: go-redis writes a *string
// or *int64 as it would the value, and boxing a pointer allocates nothing.
func (c *call) redisArgs(cmd string, script *string) []any {
	args := c.argBuf[:0]
	if n := 3 + len(c.keys) + len(c.nums); n > len(c.argBuf) {
		args = make([]any, 0, n)
	}
	args = append(args, cmd, script, len(c.keys))
	for k := range c.keys {
		args = append(args, &c.keys[k])
	}
	for k := range c.nums {
		args = append(args, &c.nums[k])
	}
	return args
}

// recycle returns c to callPool. Only the caller that received c.done (or
// never queued c) may recycle it.
func (c *call) recycle() {
	clear(c.argBuf[:])
	*c = call{done: c.done}
	callPool.Put(c)
}

// batcher pipelines take.lua runs of concurrent callers.
type batcher struct {
	send    sender
	maxWait time.Duration // maxPipelineWait; longer only in tests

	queue     chan *call
	quit      chan struct{}
	closeOnce sync.Once
	loops     sync.WaitGroup

	// pending counts the callers in run: the first of a quiet moment runs
	// its call itself (see run).
	pending atomic.Int32

	// pipelines counts the pipelines sent (NOSCRIPT retries excluded),
	// inFlight the loops sending one now, and directs the calls run by
	// their callers, for tests.
	pipelines atomic.Int64
	inFlight  atomic.Int32
	directs   atomic.Int64
}

func newBatcher(send sender) *batcher {
	return &batcher{
		send:    send,
		maxWait: maxPipelineWait,
		queue:   make(chan *call, queueSize),
		quit:    make(chan struct{}),
	}
}

// sender sends the script runs of one round trip to Redis.
type sender interface {
	// exec runs the calls by the deadline and sets each call's reply or
	// err.
	exec(deadline time.Time, calls []*call)
	// close closes the sender's connections, once the batcher's loops have
	// stopped.
	close()
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
	b.send.close()
}

func (b *batcher) closed() bool {
	select {
	case <-b.quit:
		return true
	default:
		return false
	}
}

// run runs c (see newTakeCall) in the next pipeline and appends its reply
// to dst. It returns when c.ctx ends, whether the call is still queued or
// already sent; a call whose ctx ended before it was sent is dropped, so it
// charges nothing. c is recycled, unless the loop may still hold it.
func (b *batcher) run(c *call, dst []int64) ([]int64, error) {
	ctx := c.ctx
	if err := ctx.Err(); err != nil {
		c.recycle()
		return nil, err
	}
	defer b.pending.Add(-1)
	if b.pending.Add(1) == 1 {
		return b.direct(c, dst)
	}
	if !c.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.deadline)
		defer cancel()
		c.ctx = ctx
	}
	select {
	case b.queue <- c:
	case <-ctx.Done():
		c.recycle()
		return nil, ctx.Err()
	case <-b.quit:
		c.recycle()
		return nil, errClosed
	}
	select {
	case <-c.done:
		reply, err := append(dst, c.reply...), c.err
		c.recycle()
		return reply, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.quit:
		return nil, errClosed
	}
}

// direct runs c on the caller's goroutine, when no other caller waits on
// the store: at low load the call would travel alone anyway, and handing
// it to a loop and back costs two goroutine switches and a context of its
// own. It is bounded as a pipeline is: by c.ctx, or by maxWait when c.ctx
// has no deadline.
func (b *batcher) direct(c *call, dst []int64) ([]int64, error) {
	defer c.recycle()
	b.directs.Add(1)
	d, ok := c.ctx.Deadline()
	if !c.deadline.IsZero() && (!ok || c.deadline.Before(d)) {
		d, ok = c.deadline, true
	}
	if !ok {
		d = time.Now().Add(b.maxWait)
	}
	c.alone[0] = c
	b.send.exec(d, c.alone[:])
	if c.err != nil {
		// As a queued caller does, report that the caller's ctx ended
		// (the round trip's deadline, its own, may fire first).
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		if ok && isTimeout(c.err) && !time.Now().Before(d) {
			return nil, context.DeadlineExceeded
		}
		return nil, c.err
	}
	return append(dst, c.reply...), nil
}

// loop sends pipelines until close: it waits for one call, takes every call
// queued by then (up to maxPipeline), and sends them together.
func (b *batcher) loop() {
	batch := make([]*call, 0, maxPipeline)
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
		b.sendBatch(batch)
		clear(batch)
		batch = batch[:0]
	}
}

// sendBatch sends the calls of one batch whose callers are still waiting
// in one round trip, and hands each caller its result.
func (b *batcher) sendBatch(batch []*call) {
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
		d, ok := c.ctx.Deadline()
		if !ok {
			d = time.Now().Add(b.maxWait)
		}
		if d.After(latest) {
			latest = d
		}
	}
	if len(live) == 0 {
		return
	}
	b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	b.pipelines.Add(1)
	// The callers with earlier deadlines leave on their own; the round
	// trip serves the others until the last deadline.
	b.send.exec(latest, live)
	for _, c := range live {
		c.done <- struct{}{}
	}
}

// pipelineSender sends round trips through go-redis as pipelines, which
// the cluster client splits by node: Redis Cluster's sender.
type pipelineSender struct {
	client redis.UniversalClient
	hash   string // the script's SHA-1, for EVALSHA
	src    string // the script, for EVAL
}

func (s *pipelineSender) exec(deadline time.Time, calls []*call) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntSliceCmd, len(calls))
	for i, c := range calls {
		cmds[i] = queueCmd(ctx, pipe, c.redisArgs("evalsha", &s.hash))
	}
	// Exec's error is the first failed command's, each command carries its
	// own, but one that never ran because the connection could not be set
	// up (AUTH failed) carries none: its callers get Exec's.
	_, execErr := pipe.Exec(ctx)

	// EVALSHA fails with NOSCRIPT after a restart, SCRIPT FLUSH or failover;
	// EVAL runs the script and loads it for the next pipelines.
	retried := false
	for i, c := range calls {
		if isNoScript(cmds[i].Err()) {
			cmds[i] = queueCmd(ctx, pipe, c.redisArgs("eval", &s.src))
			retried = true
		}
	}
	if retried {
		if _, err := pipe.Exec(ctx); err != nil {
			execErr = err
		}
	}

	for i, c := range calls {
		c.reply, c.err = cmds[i].Result()
		if c.err == nil && len(c.reply) == 0 && execErr != nil {
			c.err = execErr
		}
	}
}

// close does nothing: the client is the caller's.
func (s *pipelineSender) close() {}

// queueCmd queues a command in pipe. Its reply, an array of integers, is
// read straight into []int64.
func queueCmd(ctx context.Context, pipe redis.Pipeliner, args []any) *redis.IntSliceCmd {
	cmd := redis.NewIntSliceCmd(ctx, args...)
	_ = pipe.Process(ctx, cmd) // queues; errors come with Exec
	return cmd
}
