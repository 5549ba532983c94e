package ratelimit

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientOptions are the --redis-* flags.
type ClientOptions struct {
	// Addr is host:port of a single Redis server (--redis-addr).
	Addr string
	// ClusterAddrs are seed nodes of a Redis Cluster (--redis-cluster-addrs).
	// Exactly one of Addr and ClusterAddrs must be set.
	ClusterAddrs []string
	// PasswordFile holds the Redis password (--redis-password-file); one
	// trailing newline is ignored. Empty: no password.
	PasswordFile string
	// TLS connects with TLS 1.2+ and verifies the server against the system
	// roots (--redis-tls).
	TLS bool
	// Timeout bounds dialing, each read and write, and the wait for a
	// pooled connection. Default 100 ms, the longest a decision may wait
	// (MaxBudget); serve never changes it. Tests that prove exactness on a
	// loaded machine raise it, with Resilient's budget, so that no decision
	// falls back because the machine is slow.
	Timeout time.Duration
}

// Client timeouts. A decision waits at most 100 ms on the store (see
// Resilient), so a call gets one quick retry at most, and dialing a dead
// node gives up long before a default 5 s dial timeout would.
const (
	// defaultTimeout bounds a dial, a read, a write and the wait for a
	// pooled connection (ClientOptions.Timeout).
	defaultTimeout = MaxBudget
	maxRetries     = 1
	minBackoff     = 2 * time.Millisecond
	maxBackoff     = 10 * time.Millisecond
	maxRedirects   = 3
	// pipelineBufferSize is the read and write buffer of a pipeline
	// connection.
	pipelineBufferSize = 32 << 10
)

// NewClient returns a *redis.Client for Addr or a *redis.ClusterClient for
// ClusterAddrs, with timeouts that fit the decision budget and context
// deadlines honoured. It does not connect; the first command does.
func NewClient(o ClientOptions) (redis.UniversalClient, error) {
	if (o.Addr == "") == (len(o.ClusterAddrs) == 0) {
		return nil, errors.New("ratelimit: set exactly one of the redis address and the redis cluster addresses")
	}
	var password string
	if o.PasswordFile != "" {
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: read redis password: %w", err)
		}
		password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	}
	var tlsConfig *tls.Config
	if o.TLS {
		// ServerName is left empty: go-redis dials with tls.DialWithDialer,
		// which takes it from each node's address.
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	timeout := orDefault(o.Timeout, defaultTimeout)
	addrs := o.ClusterAddrs
	if len(addrs) == 0 {
		addrs = []string{o.Addr}
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 addrs,
		IsClusterMode:         len(o.ClusterAddrs) > 0,
		Password:              password,
		TLSConfig:             tlsConfig,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		PoolTimeout:           timeout,
		ContextTimeoutEnabled: true,
		MaxRetries:            maxRetries,
		MinRetryBackoff:       minBackoff,
		MaxRetryBackoff:       maxBackoff,
		MaxRedirects:          maxRedirects,
		// go-redis retries a refused dial 5 times, 100 ms apart, by
		// default: longer than a decision's whole budget. One attempt lets
		// a dead Redis fail fast and open the breaker.
		DialerRetries:      1,
		DialerRetryTimeout: minBackoff,
		// Pipelines are the batcher's (batch.go), on Redis Cluster; on a
		// single server it has connections of its own (resp.go), with
		// buffers of the same size. At most pipelineLoops at
		// once per server, each at most maxPipeline script runs of some 250
		// bytes out and 50 back, so 32 KiB buffers hold any of them; go-redis
		// would give each pipeline connection 2 × 128 KiB.
		PipelinePoolSize:        pipelineLoops,
		PipelineReadBufferSize:  pipelineBufferSize,
		PipelineWriteBufferSize: pipelineBufferSize,
	}), nil
}
