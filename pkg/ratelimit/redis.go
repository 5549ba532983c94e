package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/pkg/quota"
)

// RedisOptions configures a Redis store.
type RedisOptions struct {
	// Client is a *redis.Client or a *redis.ClusterClient (see NewClient).
	// Its timeouts should fit the decision budget, and it should have
	// ContextTimeoutEnabled so that ctx deadlines bound every call.
	Client redis.UniversalClient
	// Prefix starts every key. Default "tollgate:".
	Prefix string
	// Logger reports failed refunds (see Redis). Default: discard.
	Logger *slog.Logger
	// LogLimit bounds those lines, keyed by message (under an outage a
	// refund fails with every denied request). Default: a Limiter of its
	// own, whose suppressed lines nobody reports.
	LogLimit *logging.Limiter
}

// Redis is a Store that counts in Redis or Redis Cluster, so that every
// replica of tollgate shares one counter per key.
//
// A counter is one Redis string, tollgate:{<escaped Limit.Key>}, holding the
// GCRA TAT in microseconds of the Redis server's clock, with a PEXPIRE that
// drops it once it is full again. The hash tag keeps a counter in one slot.
//
// Each decision runs take.lua, one atomic script, with EVALSHA (EVAL on
// NOSCRIPT). On a single Redis server all limits of a decision go to one
// script run, so the decision is exact: every limit allows and is charged, or
// none is. On Redis Cluster a script may only touch one slot, so the limits
// are grouped by slot and each group runs in turn; the first group that
// denies turns the following groups into report-only runs, and the groups
// already charged are refunded with refund.lua, which moves their TATs back
// by one interval. Within a slot the decision is exact; across slots
// atomicity is by compensation: between a charge and its refund a concurrent
// request can see the counter one request fuller (and be denied), and a
// refund that fails (Redis unreachable) leaves one request charged.
//
// Script runs are pipelined: those of concurrent decisions go to Redis
// together, each still one atomic script run, and a lone decision sends
// its own (see batch.go); on Redis Cluster each slot group of a decision
// waits for the one before. On a single server they travel on connections
// of the store's own (resp.go), on Redis Cluster through go-redis. Close
// stops the pipelining goroutines and closes the store's connections.
//
// Redis 5 or later is needed (effects replication: see take.lua).
//
// Why not github.com/go-redis/redis_rate/v10: it implements the same GCRA
// in Lua but for one key per call (Allow / AllowN), so a decision with a
// per-user and a per-ip limit would charge the first even when the second
// denies, and the library has no way to undo it. Its script also reads
// TIME per key rather than once per decision. The all-or-nothing semantics
// need all keys of a slot in one script, so tollgate keeps its own ~50-line
// script, with the same algorithm as the Memory store (gcra.go).
type Redis struct {
	client  redis.UniversalClient
	cluster bool
	prefix  string
	scripts scripts
	batch   *batcher
	log     *slog.Logger

	logLimit *logging.Limiter // bounds log lines per message
}

var (
	_ Store  = (*Redis)(nil)
	_ Pinger = (*Redis)(nil)
)

// NewRedis returns a Redis store. The scripts are loaded lazily, on the
// first NOSCRIPT. Close the store before its client.
func NewRedis(opts RedisOptions) (*Redis, error) {
	r, err := newRedis(opts)
	if err != nil {
		return nil, err
	}
	r.batch.start(pipelineLoops)
	return r, nil
}

// newRedis returns a Redis store whose pipelining loops are not started.
func newRedis(opts RedisOptions) (*Redis, error) {
	if opts.Client == nil {
		return nil, errors.New("ratelimit: RedisOptions.Client is nil")
	}
	r := &Redis{
		client:  opts.Client,
		prefix:  opts.Prefix,
		scripts: newScripts(),
		log:     opts.Logger,
	}
	_, r.cluster = opts.Client.(*redis.ClusterClient)
	if r.prefix == "" {
		r.prefix = "tollgate:"
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.logLimit = opts.LogLimit; r.logLimit == nil {
		r.logLimit = logging.NewLimiter(logging.LimiterOptions{})
	}
	var send sender = &pipelineSender{client: r.client, hash: r.scripts.take.Hash(), src: takeLua}
	if conns := newRespConns(r.client, r.scripts.take.Hash(), takeLua); conns != nil {
		send = conns
	}
	r.batch = newBatcher(send)
	return r, nil
}

// Close stops the goroutines that send pipelines, after the pipelines in
// flight; Takes waiting on them and later Takes return an error. It does
// not close the client. Close is idempotent and always returns nil.
func (r *Redis) Close() error {
	r.batch.close()
	return nil
}

// maxTagLen bounds the hash tag; longer keys are replaced by their SHA-256.
const maxTagLen = 200

// redisKey returns the Redis key of a counter: the prefix and the escaped
// Limit.Key as a hash tag. '%', '{' and '}' are percent-encoded so that the
// tag ends where the key ends and two keys never collide; a key longer than
// maxTagLen becomes "%H" and its SHA-256 in hex, which no encoded key starts
// with. The keys are new strings: the batcher may still send a call after
// its Take returned on its deadline, when the caller reuses Limit.Key.
func (r *Redis) redisKey(key []byte) string {
	var b strings.Builder
	b.Grow(len(r.prefix) + len(key) + 2)
	r.appendKey(&b, key)
	return b.String()
}

// redisKeys returns the Redis keys of all limits, built into one string
// that they slice.
func (r *Redis) redisKeys(limits []Limit) []string {
	var b strings.Builder
	n := 0
	for _, l := range limits {
		n += len(r.prefix) + min(len(l.Key), maxTagLen) + 2
	}
	b.Grow(n + n/8)
	ends := make([]int, 0, inlineLimits)
	for _, l := range limits {
		r.appendKey(&b, l.Key)
		ends = append(ends, b.Len())
	}
	all := b.String()
	keys := make([]string, len(limits))
	begin := 0
	for i, end := range ends {
		keys[i], begin = all[begin:end], end
	}
	return keys
}

func (r *Redis) appendKey(b *strings.Builder, key []byte) {
	b.WriteString(r.prefix)
	b.WriteByte('{')
	if len(key) > maxTagLen {
		sum := sha256.Sum256(key)
		b.WriteString("%H")
		var h [2 * sha256.Size]byte
		hex.Encode(h[:], sum[:])
		b.Write(h[:])
	} else {
		for i := range len(key) {
			switch c := key[i]; c {
			case '%':
				b.WriteString("%25")
			case '{':
				b.WriteString("%7B")
			case '}':
				b.WriteString("%7D")
			default:
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('}')
}

// slotGroup is the limits of one decision that share a hash slot.
type slotGroup struct {
	idx  []int // indexes into the limits of the Take
	keys []string
}

// groups splits the limits into one group per hash slot of Redis Cluster,
// in the order in which their slots first appear.
func (r *Redis) groups(limits []Limit) []slotGroup {
	var groups []slotGroup
	var slots []int
	for i, l := range limits {
		key := r.redisKey(l.Key)
		slot := hashSlot(key)
		j := 0
		for j < len(slots) && slots[j] != slot {
			j++
		}
		if j == len(slots) {
			slots = append(slots, slot)
			groups = append(groups, slotGroup{})
		}
		groups[j].idx = append(groups[j].idx, i)
		groups[j].keys = append(groups[j].keys, key)
	}
	return groups
}

// Take implements Store. It returns an error when Redis cannot be reached in
// time (ctx); see Resilient for a budget and fallbacks. It writes statuses
// only once Redis has replied, and nothing it sends refers to limits or
// statuses: a call still queued or in flight when Take returns on ctx
// holds copies.
func (r *Redis) Take(ctx context.Context, limits []Limit, statuses []Status) (Result, error) {
	return r.takeBy(ctx, time.Time{}, limits, statuses)
}

// takeBy is Take that also ends at deadline, unless it is zero (Resilient's
// budget, see deadlineTaker). On a single server a lone caller's round trip
// then needs no context of its own: the deadline goes to the connection.
func (r *Redis) takeBy(ctx context.Context, deadline time.Time, limits []Limit, statuses []Status) (Result, error) {
	if err := validate(limits); err != nil {
		return Result{}, err
	}
	if len(limits) == 0 {
		return Result{Allowed: true}, nil
	}
	if r.batch.closed() {
		return Result{}, errClosed
	}
	if !r.cluster {
		return r.takeAll(ctx, deadline, limits, statuses)
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	res := Result{Allowed: true, Statuses: quota.StatusesFor(statuses, len(limits))}
	var charged []slotGroup
	groups := r.groups(limits)
	for _, g := range groups {
		charge := res.Allowed
		allowed, now, tats, err := r.take(ctx, limits, g, charge)
		if err != nil {
			r.refund(ctx, limits, charged)
			return Result{}, err
		}
		for k, i := range g.idx {
			gc := newGCRA(limits[i], time.Microsecond)
			res.Statuses[i] = gc.status(limits[i], tats[k], now, charge && allowed, time.Microsecond)
		}
		switch {
		case charge && allowed:
			charged = append(charged, g)
		case !allowed && res.Allowed:
			res.Allowed = false
			r.refund(ctx, limits, charged)
			for _, c := range charged {
				for _, i := range c.idx {
					res.Statuses[i] = uncharge(res.Statuses[i], limits[i])
				}
			}
			charged = nil
		}
	}
	return res, nil
}

// takeAll decides all limits in one script run, pipelined: on a single
// Redis server every key is in reach of one script.
func (r *Redis) takeAll(ctx context.Context, deadline time.Time, limits []Limit, statuses []Status) (Result, error) {
	keys := r.redisKeys(limits)
	var buf [2 + inlineLimits]int64
	c := newTakeCall(ctx, keys, limits, nil, true)
	c.deadline = deadline
	reply, err := r.batch.run(c, buf[:0])
	allowed, now, tats, err := takeReply(reply, err, len(keys))
	if err != nil {
		return Result{}, err
	}
	res := Result{Allowed: allowed, Statuses: quota.StatusesFor(statuses, len(limits))}
	for i, l := range limits {
		res.Statuses[i] = newGCRA(l, time.Microsecond).status(l, tats[i], now, allowed, time.Microsecond)
	}
	return res, nil
}

// take runs take.lua for one slot group in the next pipeline. The groups
// of a decision run one after the other, each in a pipeline of its own,
// which the cluster client sends to the group's node.
func (r *Redis) take(ctx context.Context, limits []Limit, g slotGroup, charge bool) (allowed bool, now int64, tats []int64, err error) {
	reply, err := r.batch.run(newTakeCall(ctx, g.keys, limits, g.idx, charge), nil)
	return takeReply(reply, err, len(g.keys))
}

// takeReply reads take.lua's reply for n keys.
func takeReply(reply []int64, err error, n int) (allowed bool, now int64, tats []int64, _ error) {
	if err != nil {
		return false, 0, nil, fmt.Errorf("ratelimit: redis take: %w", err)
	}
	if len(reply) != 2+n {
		return false, 0, nil, fmt.Errorf("ratelimit: redis take: %d values in reply, want %d", len(reply), 2+n)
	}
	return reply[0] == 1, reply[1], reply[2:], nil
}

// refund gives back the request charged to each group. A failed refund is
// logged (as RedisOptions.LogLimit allows) and otherwise ignored: the
// decision stands, and the counter is one request fuller until it refills.
func (r *Redis) refund(ctx context.Context, limits []Limit, groups []slotGroup) {
	for _, g := range groups {
		args := make([]any, len(g.idx))
		for k, i := range g.idx {
			args[k] = newGCRA(limits[i], time.Microsecond).interval
		}
		if err := r.scripts.refund.Run(ctx, r.client, g.keys, args...).Err(); err != nil && r.logLimit.Allow(msgRefundFailed) {
			r.log.WarnContext(ctx, msgRefundFailed, "keys", len(g.keys), "error", err)
		}
	}
}

const msgRefundFailed = "quota refund failed; a denied request stays charged"

// uncharge turns the Status of a charged limit into the Status it has after
// its refund.
func uncharge(s Status, l Limit) Status {
	interval := time.Duration(newGCRA(l, time.Microsecond).interval) * time.Microsecond
	s.Remaining = min(s.Remaining+1, l.MaxBurst())
	s.Reset = max(s.Reset-interval, 0)
	return s
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Ping asks the Redis server, or every master of a Redis Cluster at once,
// to answer PING: the store answers only when every part of it does.
func (r *Redis) Ping(ctx context.Context) error {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		if err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
			return fmt.Errorf("ratelimit: ping redis cluster: %w", err)
		}
		return nil
	}
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ratelimit: ping redis: %w", err)
	}
	return nil
}

// Warm loads the scripts on the Redis server, or on every master of a
// Redis Cluster, which also connects to each and learns the cluster's
// slots: the first decisions after a start then cost one round trip each,
// instead of a dial, a slot lookup and a NOSCRIPT retry, which together can
// exceed a decision's budget when many arrive at once.
func (r *Redis) Warm(ctx context.Context) error {
	load := func(ctx context.Context, c redis.Scripter) error {
		for _, s := range []*redis.Script{r.scripts.take, r.scripts.refund} {
			if err := s.Load(ctx, c).Err(); err != nil {
				return fmt.Errorf("ratelimit: load script: %w", err)
			}
		}
		return nil
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return load(ctx, c) })
	}
	return load(ctx, r.client)
}
