package server

import (
	"container/list"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/peer"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
)

// Defaults of the limits that keep memory and descriptors bounded
// whatever callers send (docs/operations.md derives the ceilings).
const (
	// DefaultMaxInflightChecks bounds the checks in flight, gRPC and HTTP
	// together. On 2 cores it is a few milliseconds of queued CPU, over
	// 100,000 checks per second at a millisecond each, and with
	// DefaultMaxRequestBytes it bounds the memory requests can hold.
	DefaultMaxInflightChecks = 128
	// DefaultMaxRequestBytes bounds one CheckRequest. The largest that
	// Envoy sends at its default header limits (100 headers of 60 KiB in
	// all, the path again in its own field, addresses, a client
	// certificate, context extensions and metadata) is about 74 KiB
	// (TestLargestRealisticCheckRequestFits); a 60 KiB path, sent twice,
	// still fits.
	DefaultMaxRequestBytes = 256 << 10
	// MaxStreamsPerConnection is announced to gRPC clients as
	// SETTINGS_MAX_CONCURRENT_STREAMS: Envoy, like grpc-go, opens another
	// connection rather than exceed it, and a flood on a few connections
	// queues at its client instead of in tollgate.
	MaxStreamsPerConnection = 100
	// maxConnectionsCeiling is the most --max-connections picks by itself
	// per listener: a gRPC connection that has carried checks holds about
	// 26 KiB, an HTTP one 15 KiB (docs/operations.md).
	maxConnectionsCeiling = 1024
	// reservedDescriptors are kept out of the gRPC and HTTP listeners'
	// budget: health, metrics and pprof (smallListenerConnections each),
	// policy files and their watches, Redis, JWKS and API server clients.
	reservedDescriptors = 256
	// smallListenerConnections is the budget of the health, metrics and
	// pprof listeners each: probes and scrapes need a few.
	smallListenerConnections = 32
)

// overloaded is the HTTP answer to a check refused because too many are in
// flight: a 503 the caller may retry at once, elsewhere.
var overloaded = decision.Decision{
	Status: http.StatusServiceUnavailable, Code: decision.CodeUnavailable, Reason: "overloaded",
	Message:         "too many checks in flight; retry later",
	ResponseHeaders: []decision.Header{{Name: "retry-after", Value: "1"}},
}

// An admission bounds the checks in flight, and shares them among
// connections: past half of the limit, a connection may start another
// check only while the room left after it is at least twice what the
// connection already holds. Busy connections thus stop short of the
// limit, the busiest first, and a connection with nothing in flight is
// admitted as long as there is any room: a flood on some connections
// never refuses another (a single connection holds at most half). A
// refused check costs no queueing: the caller hears at once.
type admission struct {
	max int64
	// inflight counts admitted checks.
	inflight atomic.Int64
	// untracked is the share of checks on connections that no
	// limitListener accepted (tests that serve on listeners of their own).
	untracked share
	// hold is how long a gRPC stream that ended before its message was
	// read keeps its place (abortedHold); reapEvery is how often the
	// reaper looks at the unclaimed slots while there are any
	// (reapInterval).
	hold, reapEvery time.Duration

	mu sync.Mutex
	// unclaimed lists the slots of admitted gRPC streams whose handler
	// has not started (see reap); reaper calls reap, and armed is set
	// while a call is due or running. mu guards all three.
	unclaimed *slot
	reaper    *time.Timer
	armed     bool
}

// newAdmission returns an admission of max checks in flight.
func newAdmission(max int64) *admission {
	return &admission{max: max, hold: abortedHold, reapEvery: reapInterval}
}

// A share is what one connection holds of an admission.
type share struct{ inflight atomic.Int64 }

// acquire admits one check on sh, or reports false when it must be refused.
// The total is only ever raised below the limit, so that a storm of
// refused attempts cannot push it over and refuse a light connection too.
func (a *admission) acquire(sh *share) bool {
	held := sh.inflight.Add(1) - 1 // the connection's checks before this one
	for {
		n := a.inflight.Load()
		if n >= a.max || n >= a.max/2 && 2*held > a.max-n-1 {
			sh.inflight.Add(-1)
			return false
		}
		if a.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release ends a check that acquire admitted.
func (a *admission) release(sh *share) {
	a.inflight.Add(-1)
	sh.inflight.Add(-1)
}

// shareOf returns the share of the connection ctx belongs to: a limited
// connection's address carries it (it is the peer address of gRPC
// streams), and HTTP requests find it in their context (httpShare).
func (a *admission) shareOf(ctx context.Context) *share {
	if sh, ok := ctx.Value(shareKey{}).(*share); ok {
		return sh
	}
	if p, ok := peer.FromContext(ctx); ok {
		if a, ok := p.Addr.(trackedAddr); ok {
			return a.share
		}
	}
	return &a.untracked
}

type shareKey struct{}

// httpShare is an http.Server's ConnContext: requests of a connection
// that a limitListener accepted find its share in their context.
func httpShare(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok {
		return context.WithValue(ctx, shareKey{}, &tc.share)
	}
	return ctx
}

// limitHTTP refuses requests to next past the admission with a 503.
func limitHTTP(a *admission, next http.Handler, refused func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sh := a.shareOf(r.Context())
		if !a.acquire(sh) {
			refused()
			httpauth.WriteDecision(w, &overloaded)
			return
		}
		defer a.release(sh)
		next.ServeHTTP(w, r)
	})
}

// A limitListener holds at most max connections open. When a connection
// arrives at the limit, the oldest connection that has not sent a byte is
// closed to make room (a client that connects and says nothing is the
// cheapest way to hold descriptors; a real client speaks at once), or,
// when every connection has spoken, the new one is closed. Connections are
// accepted either way, so none waits unseen in the kernel's backlog.
type limitListener struct {
	net.Listener
	max int
	// onRefuse is called for each connection closed by the limit, with
	// "evicted" (a silent one, to make room) or "refused" (the new one).
	onRefuse func(reason string)

	mu sync.Mutex
	// open counts the accepted connections not yet closed; silent holds
	// those that have not sent a byte, oldest first. mu guards both.
	open   int
	silent list.List
}

func newLimitListener(l net.Listener, max int, onRefuse func(string)) *limitListener {
	return &limitListener{Listener: l, max: max, onRefuse: onRefuse}
}

// Accept accepts the next connection the limit lets through.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, victim := l.admit(c)
		if victim != nil {
			victim.Conn.Close()
			l.onRefuse("evicted")
		}
		if tc != nil {
			return tc, nil
		}
		c.Close()
		l.onRefuse("refused")
	}
}

// admit counts c in, making room by evicting the oldest silent connection
// when at the limit; it returns nil when there is no room.
func (l *limitListener) admit(c net.Conn) (tc, victim *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max {
		front := l.silent.Front()
		if front == nil {
			return nil, nil
		}
		victim = front.Value.(*trackedConn)
		l.forgetLocked(victim)
	}
	tc = &trackedConn{Conn: c, l: l, counted: true}
	tc.elem = l.silent.PushBack(tc)
	l.open++
	return tc, victim
}

// Open returns the number of open connections.
func (l *limitListener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// forgetLocked stops counting c; l.mu must be held.
func (l *limitListener) forgetLocked(c *trackedConn) {
	if c.elem != nil {
		l.silent.Remove(c.elem)
		c.elem = nil
	}
	if c.counted {
		c.counted = false
		l.open--
	}
}

// A trackedConn is a connection a limitListener accepted.
type trackedConn struct {
	net.Conn
	l     *limitListener
	share share
	// spoke is set once the peer has sent a byte.
	spoke atomic.Bool
	// elem is c's place in l.silent until it speaks; counted is whether it
	// is in l.open. l.mu guards both.
	elem    *list.Element
	counted bool
	closed  sync.Once
}

// A trackedAddr is the remote address of a trackedConn, carrying its
// share: gRPC hands it to every stream of the connection as the peer.
type trackedAddr struct {
	net.Addr
	share *share
}

func (c *trackedConn) RemoteAddr() net.Addr {
	return trackedAddr{Addr: c.Conn.RemoteAddr(), share: &c.share}
}

func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.spoke.Load() && c.spoke.CompareAndSwap(false, true) {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.silent.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.closed.Do(func() {
		c.l.mu.Lock()
		c.l.forgetLocked(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// bigListeners counts the listeners that share the descriptor budget:
// gRPC and HTTP, when enabled.
func bigListeners(opts Options) int {
	n := 0
	for _, addr := range []string{opts.GRPCAddr, opts.HTTPAddr} {
		if addr != "" {
			n++
		}
	}
	return max(n, 1)
}

// connectionBudget returns the default connection limit of each of n
// listeners (gRPC, HTTP): the descriptors RLIMIT_NOFILE allows past
// reservedDescriptors, shared among them, at most maxConnectionsCeiling
// and at least smallListenerConnections.
func connectionBudget(n int) int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return maxConnectionsCeiling
	}
	return budgetFor(rl.Cur, n)
}

func budgetFor(nofile uint64, n int) int {
	if nofile > 1<<30 {
		nofile = 1 << 30
	}
	per := (int(nofile) - reservedDescriptors) / n
	return min(max(per, smallListenerConnections), maxConnectionsCeiling)
}
