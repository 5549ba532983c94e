package ratelimit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/quota"
)

// MemoryOptions configures a Memory store.
type MemoryOptions struct {
	// Shards is the number of independently locked maps, rounded up to a
	// power of two. Default 64.
	Shards int
	// SweepInterval is how often a background goroutine drops idle counters
	// (those whose TAT has passed). Default 1m; negative disables the
	// goroutine (call Sweep yourself).
	SweepInterval time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxKeys bounds the number of counters. Default DefaultMaxKeys;
	// negative means unbounded. When a new counter would exceed it, the
	// most refilled of a few sampled counters is dropped (see evictLocked).
	MaxKeys int
	// MaxBytes bounds the heap the counters take, keys included, as
	// counted by counterBytes (--memory-store-max-bytes). Default
	// DefaultMaxBytes; negative means unbounded. A new counter that would
	// exceed it drops counters as MaxKeys does.
	MaxBytes int64
}

// DefaultMaxKeys bounds the number of counters of a Memory store.
const DefaultMaxKeys = 1_000_000

// DefaultMaxBytes bounds a Memory store's counters at 64 MiB of heap: at
// least 299,000 counters whatever their keys (a counter takes at most
// counterBytes of a maxMemoryKeyLen key, 224 bytes), about 322,000 of
// typical per-user keys (~110 bytes).
const DefaultMaxBytes = 64 << 20

// maxMemoryKeyLen bounds the keys a Memory store keeps: a longer
// Limit.Key (a header value can be 60 KB) is kept as its SHA-256, as the
// Redis store does with keys longer than maxTagLen.
const maxMemoryKeyLen = 128

// evictionSamples is how many counters evictLocked compares.
const evictionSamples = 8

// Memory is a Store that counts in this process only. It is exact under
// concurrency: every Take locks the shards of all its keys, in ascending shard
// order so that two Takes never deadlock, decides and charges, and unlocks.
// Idle counters are dropped by Sweep, so memory is bounded by the number of
// counters active within one Period, and at any time by MaxKeys and
// MaxBytes: keys longer than maxMemoryKeyLen are kept as their SHA-256, so
// no caller can make a counter take more than a few hundred bytes.
type Memory struct {
	// perShard caps the counters of one shard and perShardBytes their
	// bytes; 0 is unbounded.
	perShard      int
	perShardBytes int64
	shards        []memoryShard
	mask          uint64
	seed          maphash.Seed
	now           func() time.Time
	base          time.Time // TATs are nanoseconds since base, on the monotonic clock

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

var _ Store = (*Memory)(nil)

// memoryShard is one locked map of counters.
//
// A counter lives in a slot of counters, apart from its key in index, so
// that charging an existing counter writes the slot and never the map: a
// map assignment would have to make the key a string from the caller's
// bytes, one allocation per charge. Only a new counter allocates (its key).
type memoryShard struct {
	// mu guards index, counters, free, bytes and peak.
	mu sync.Mutex
	// index maps a memory key (memoryKey) to its counter's slot in
	// counters.
	index map[string]int32
	// counters holds the counter of each slot; the slots listed in free
	// belong to no key.
	counters []counter
	free     []int32
	// bytes is the sum of counterBytes over the keys of index.
	bytes int64
	// peak is the largest len(index) since the map was last rebuilt; Go
	// maps never shrink, so Sweep rebuilds a map (and its slots) that has
	// emptied out.
	peak int
	_    [32]byte // keep shards on separate cache lines
}

// lookup returns the slot of the counter with memory key k.
func (s *memoryShard) lookup(k []byte) (int32, bool) {
	slot, ok := s.index[string(k)] // converting in a map index allocates nothing
	return slot, ok
}

// A counter is a TAT, in nanoseconds since Memory.base, and the emission
// interval it was last charged at (see gcra.rescale).
type counter struct{ tat, interval int64 }

// insertLocked adds the counter c under key k; k must be new.
func (s *memoryShard) insertLocked(k []byte, c counter) {
	var slot int32
	if n := len(s.free); n > 0 {
		slot, s.free = s.free[n-1], s.free[:n-1]
		s.counters[slot] = c
	} else {
		slot = int32(len(s.counters))
		s.counters = append(s.counters, c)
	}
	// The one allocation of a charge: the key of a new counter, a copy of
	// the caller's bytes.
	s.index[string(k)] = slot
	s.bytes += counterBytes(len(k))
	s.peak = max(s.peak, len(s.index))
}

// deleteLocked drops the counter k, in slot.
func (s *memoryShard) deleteLocked(k string, slot int32) {
	delete(s.index, k)
	s.free = append(s.free, slot)
	s.bytes -= counterBytes(len(k))
}

// counterBytes is what one counter with a memory key of keyLen bytes takes
// on the heap at most: its map slot (key header and slot number, 24
// bytes, at most 57 with the slack of a map that has just grown), its TAT
// and interval (16 bytes, at most 32 in a slice that has just grown), and the key's
// bytes rounded up to their allocation size class (a multiple of 16 up to
// 128 bytes). TestMemoryBytesPerCounter checks it.
func counterBytes(keyLen int) int64 { return 96 + int64(keyLen+15)&^15 }

// hashedKeyPrefix starts the memory key of a long Limit.Key. A short key
// equal to a hashed one would have to be hashedKeyPrefix and a SHA-256
// preimage.
const hashedKeyPrefix = "\xff#"

// hashedKeyLen is the length of a hashed memory key.
const hashedKeyLen = len(hashedKeyPrefix) + sha256.Size

// memoryKey returns the key a Memory store keeps for a Limit.Key: the key
// itself up to maxMemoryKeyLen bytes, else (a new slice) hashedKeyPrefix
// and its SHA-256.
func memoryKey(key []byte) []byte {
	if len(key) <= maxMemoryKeyLen {
		return key
	}
	sum := sha256.Sum256(key)
	return append(append(make([]byte, 0, hashedKeyLen), hashedKeyPrefix...), sum[:]...)
}

// NewMemory returns a Memory store. Call Close to stop its sweeper.
func NewMemory(opts MemoryOptions) *Memory {
	n := 64
	if opts.Shards > 0 {
		n = 1
		for n < opts.Shards {
			n <<= 1
		}
	}
	maxKeys := opts.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultMaxKeys
	}
	perShard := 0 // unbounded
	if maxKeys > 0 {
		perShard = max(1, maxKeys/n)
	}
	maxBytes := opts.MaxBytes
	if maxBytes == 0 {
		maxBytes = DefaultMaxBytes
	}
	var perShardBytes int64 // unbounded
	if maxBytes > 0 {
		perShardBytes = max(1, maxBytes/int64(n))
	}
	m := &Memory{
		perShard:      perShard,
		perShardBytes: perShardBytes,
		shards:        make([]memoryShard, n),
		mask:          uint64(n - 1),
		seed:          maphash.MakeSeed(),
		now:           opts.Now,
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.base = m.now()
	for i := range m.shards {
		m.shards[i].index = make(map[string]int32)
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Minute
	}
	if interval < 0 {
		close(m.done)
		return m
	}
	go m.sweepLoop(interval)
	return m
}

// Close stops the background sweeper. Take keeps working after Close.
func (m *Memory) Close() error {
	m.stopOnce.Do(func() { close(m.stop) })
	<-m.done
	return nil
}

func (m *Memory) sweepLoop(interval time.Duration) {
	defer close(m.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.Sweep()
		}
	}
}

// Sweep drops every counter whose TAT has passed (such a counter equals a
// fresh one) and rebuilds maps that shrank to a quarter of their peak.
func (m *Memory) Sweep() {
	for i := range m.shards {
		s := &m.shards[i]
		// Read the clock per shard: a long sweep must not drop a counter
		// charged after it started.
		now := m.nanos()
		s.mu.Lock()
		for k, slot := range s.index {
			if s.counters[slot].tat <= now {
				s.deleteLocked(k, slot)
			}
		}
		if n := len(s.index); s.peak > 1024 && n < s.peak/4 {
			// Copy by hand: maps.Clone keeps the old capacity. The slots
			// are renumbered densely.
			index := make(map[string]int32, n)
			counters := make([]counter, 0, n)
			for k, slot := range s.index {
				index[k] = int32(len(counters))
				counters = append(counters, s.counters[slot])
			}
			s.index, s.counters, s.free = index, counters, nil
			s.peak = n
		}
		s.mu.Unlock()
	}
}

// Len returns the number of tracked counters.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

func (m *Memory) nanos() int64 {
	return int64(m.now().Sub(m.base))
}

func (m *Memory) shard(key []byte) int {
	return int(maphash.Bytes(m.seed, key) & m.mask)
}

// inlineKeys is the number of limits whose keys a Take keeps on its stack.
const inlineKeys = 8

// Take implements Store. It never returns an error other than
// ErrInvalidLimit; ctx is not consulted because Take does not wait on I/O.
// It allocates only for a counter it creates (its key), a key longer than
// maxMemoryKeyLen (its hash) and more than inlineKeys limits.
func (m *Memory) Take(_ context.Context, limits []Limit, statuses []Status) (Result, error) {
	if err := validate(limits); err != nil {
		return Result{}, err
	}
	if len(limits) == 0 {
		return Result{Allowed: true}, nil
	}
	var kbuf [inlineKeys][]byte
	keys := kbuf[:0]
	for _, l := range limits {
		keys = append(keys, memoryKey(l.Key))
	}
	// Lock the shards of all keys in ascending order; a fixed order means
	// concurrent Takes over the same shards cannot deadlock.
	var buf [8]int
	idx := buf[:0]
	for _, k := range keys {
		idx = append(idx, m.shard(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		m.shards[i].mu.Lock()
	}
	res := m.takeLocked(limits, keys, statuses)
	for _, i := range slices.Backward(idx) {
		m.shards[i].mu.Unlock()
	}
	return res, nil
}

// takeLocked decides and charges; keys are the limits' memory keys, and
// their shards must be locked. The Statuses go to statuses when it has
// room.
func (m *Memory) takeLocked(limits []Limit, keys [][]byte, statuses []Status) Result {
	now := m.nanos()
	var buf [inlineKeys]int64
	tats := buf[:0] // clamped TAT of each limit before this request
	allowed := true
	for i, l := range limits {
		g := newGCRA(l, time.Nanosecond)
		s := &m.shards[m.shard(keys[i])]
		var tat int64
		slot, ok := s.lookup(keys[i])
		if ok {
			c := s.counters[slot]
			tat = g.rescale(c.tat, c.interval, now)
		}
		// A key listed twice is charged twice: see the earlier charge.
		for j := range i {
			if bytes.Equal(keys[j], keys[i]) {
				tat, ok = tats[j]+newGCRA(limits[j], time.Nanosecond).interval, true
			}
		}
		if !ok {
			tat = now
		}
		tat = g.clamp(tat, now)
		tats = append(tats, tat)
		allowed = allowed && g.allows(tat, now)
	}
	res := Result{Allowed: allowed, Statuses: quota.StatusesFor(statuses, len(limits))}
	for i, l := range limits {
		g := newGCRA(l, time.Nanosecond)
		res.Statuses[i] = g.status(l, tats[i], now, allowed, time.Nanosecond)
		if !allowed {
			continue
		}
		k := keys[i]
		s := &m.shards[m.shard(k)]
		if slot, ok := s.lookup(k); ok {
			s.counters[slot] = counter{tats[i] + g.interval, g.interval}
			continue
		}
		size := counterBytes(len(k))
		for len(s.index) > 0 && ((m.perShard > 0 && len(s.index) >= m.perShard) ||
			(m.perShardBytes > 0 && s.bytes+size > m.perShardBytes)) {
			if !evictLocked(s, now, keys) {
				break // only this decision's counters are left
			}
		}
		s.insertLocked(k, counter{tats[i] + g.interval, g.interval})
	}
	return res
}

// evictLocked drops one counter of a full shard: an idle one if the sample
// has one, else the most refilled (earliest TAT) of a few sampled counters,
// never one of the current decision's keys, and reports whether it found
// one. Dropping a counter refills it, so the most refilled one loses the
// least, while a drained counter (a caller being limited) has a TAT far
// ahead and survives a flood of new keys meant to push it out. The shard's
// lock must be held.
func evictLocked(s *memoryShard, now int64, current [][]byte) bool {
	victim, victimSlot, victimTAT, n := "", int32(0), int64(0), 0
	for k, slot := range s.index { // map iteration starts at a random entry
		if slices.ContainsFunc(current, func(c []byte) bool { return string(c) == k }) {
			continue
		}
		tat := s.counters[slot].tat
		if n == 0 || tat < victimTAT {
			victim, victimSlot, victimTAT = k, slot, tat
		}
		if n++; n >= evictionSamples || tat <= now {
			break
		}
	}
	if n == 0 {
		return false
	}
	s.deleteLocked(victim, victimSlot)
	return true
}
