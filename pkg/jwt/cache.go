package jwt

import (
	"hash/maphash"
	"sync"
)

// DefaultCacheSize is the verified-token cache size used when
// Options.CacheSize is 0.
const DefaultCacheSize = 100_000

const cacheShards = 64

// cacheKey identifies a verified token for one verifier configuration. The
// token is represented by two 64-bit maphash values under independent random
// per-process seeds (128 bits): an attacker who does not know the seeds
// cannot construct a token colliding with a cached one.
type cacheKey struct {
	vid    uint64
	h1, h2 uint64
}

type cacheEntry struct {
	id      *Identity
	key     *key  // the key that verified the token; revoked → entry invalid
	expires int64 // unix nanoseconds of the token's exp; entry unusable from then on
}

type cacheShard struct {
	mu sync.RWMutex // mu guards m
	m  map[cacheKey]cacheEntry
	_  [40]byte // keep shards on separate cache lines
}

// tokenCache is a bounded, sharded map of verified tokens. When a shard is
// full an insert first drops expired entries it meets, else one arbitrary
// entry (Go's randomised map iteration makes this random eviction).
type tokenCache struct {
	seed1, seed2 maphash.Seed
	perShard     int
	shards       [cacheShards]cacheShard
}

func newTokenCache(size int) *tokenCache {
	per := (size + cacheShards - 1) / cacheShards
	if per < 1 {
		per = 1
	}
	c := &tokenCache{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[cacheKey]cacheEntry)
	}
	return c
}

func (c *tokenCache) key(vid uint64, raw string) cacheKey {
	return cacheKey{vid: vid, h1: maphash.String(c.seed1, raw), h2: maphash.String(c.seed2, raw)}
}

func (c *tokenCache) shard(k cacheKey) *cacheShard { return &c.shards[k.h1%cacheShards] }

// get returns the identity cached under k if it is still valid at now
// (unix nanoseconds) and its key was not revoked.
func (c *tokenCache) get(k cacheKey, now int64) (*Identity, bool) {
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if now >= e.expires || e.key.revoked.Load() {
		s.mu.Lock()
		if cur, ok := s.m[k]; ok && cur == e {
			delete(s.m, k)
		}
		s.mu.Unlock()
		return nil, false
	}
	return e.id, true
}

func (c *tokenCache) put(k cacheKey, e cacheEntry, now int64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[k]; !ok && len(s.m) >= c.perShard {
		evicted := false
		n := 0
		for ck, ce := range s.m {
			if now >= ce.expires || ce.key.revoked.Load() {
				delete(s.m, ck)
				evicted = true
			}
			if n++; n >= 8 {
				break
			}
		}
		if !evicted {
			for ck := range s.m {
				delete(s.m, ck)
				break
			}
		}
	}
	s.m[k] = e
}

// dropRevoked removes every entry whose key was revoked. Sources call it
// after a refresh removed keys.
func (c *tokenCache) dropRevoked() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.key.revoked.Load() {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
