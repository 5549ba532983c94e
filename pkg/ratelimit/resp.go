package ratelimit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Connections of the store's own to a single Redis server. The batcher
// sends its script runs on them rather than through go-redis: a decision's
// round trip is then one write and one read of RESP that the store encodes
// and parses in place, with one deadline per round trip. go-redis pays, per
// command or pipeline, a pool checkout that peeks at the socket
// (recvfrom(MSG_PEEK)) and clears its deadline, a read and a write
// deadline, a command object with boxed arguments and a reply slice. Under
// make loadtest that was 4 to 5 µs of tollgate's CPU per decision, about an
// eighth of what the Redis store costs it beyond the memory store; the rest
// is the round trip's own write, read and wake-up (docs/loadtest.md).
//
// Everything else (PING, SCRIPT LOAD, refunds, Redis Cluster) stays on
// go-redis, whose Options give the address, credentials, TLS and dialer.

// respConns dials and keeps the connections. At most pipelineLoops+1 round
// trips run at once (each loop's and one direct caller's), so at most that
// many connections are ever open and idle.
type respConns struct {
	hash string // take.lua's SHA-1, for EVALSHA
	src  string // take.lua, for EVAL

	dial     func(ctx context.Context) (net.Conn, error)
	username string
	password string
	db       int

	mu     sync.Mutex
	idle   []*respConn
	closed bool
}

// respConn is one connection; one round trip uses it at a time.
type respConn struct {
	nc  net.Conn
	rd  *bufio.Reader
	buf []byte // the commands of the round trip being written
}

// newRespConns returns connections to c's server, or nil when c is not a
// plain *redis.Client or authenticates in a way this client does not speak
// (credential providers, OnConnect hooks): the batcher then stays on
// go-redis. The connections speak RESP2, whatever protocol go-redis's use:
// take.lua's reply is an array of integers in both.
func newRespConns(c redis.UniversalClient, hash, src string) *respConns {
	rc, ok := c.(*redis.Client)
	if !ok {
		return nil
	}
	o := rc.Options()
	if o.Dialer == nil || o.CredentialsProvider != nil || o.CredentialsProviderContext != nil ||
		o.StreamingCredentialsProvider != nil || o.OnConnect != nil {
		return nil
	}
	network, addr, dial := o.Network, o.Addr, o.Dialer
	return &respConns{
		hash:     hash,
		src:      src,
		dial:     func(ctx context.Context) (net.Conn, error) { return dial(ctx, network, addr) },
		username: o.Username,
		password: o.Password,
		db:       o.DB,
	}
}

// get returns an idle connection (reused true), or dials a new one by the
// deadline.
func (p *respConns) get(deadline time.Time) (cn *respConn, reused bool, err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, false, errClosed
	}
	if n := len(p.idle); n > 0 {
		cn = p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return cn, true, nil
	}
	p.mu.Unlock()
	cn, err = p.connect(deadline)
	return cn, false, err
}

// put makes cn idle, or closes it once the store is closed.
func (p *respConns) put(cn *respConn) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = cn.nc.Close()
		return
	}
	p.idle = append(p.idle, cn)
	p.mu.Unlock()
}

// close closes the idle connections; those in use close when put back.
func (p *respConns) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, cn := range p.idle {
		_ = cn.nc.Close()
	}
	p.idle = nil
}

// connect dials and authenticates a connection, by the deadline.
func (p *respConns) connect(deadline time.Time) (*respConn, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, err // net.OpError names the address and the cause
	}
	cn := &respConn{
		nc:  nc,
		rd:  bufio.NewReaderSize(nc, pipelineBufferSize),
		buf: make([]byte, 0, pipelineBufferSize),
	}
	var hello [][]string
	switch {
	case p.password != "" && p.username != "":
		hello = append(hello, []string{"AUTH", p.username, p.password})
	case p.password != "":
		hello = append(hello, []string{"AUTH", p.password})
	}
	if p.db != 0 {
		hello = append(hello, []string{"SELECT", strconv.Itoa(p.db)})
	}
	if len(hello) == 0 {
		// A new connection's first script waits for a server that
		// answers: a hung Redis accepts connections (the kernel does), and
		// a script written to one would run when Redis wakes up, long
		// after its caller got the fallback's answer.
		hello = append(hello, []string{"PING"})
	}
	if err := cn.handshake(deadline, hello); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return cn, nil
}

// handshake sends the commands and expects a simple string (+OK, +PONG)
// in reply to each.
func (cn *respConn) handshake(deadline time.Time, cmds [][]string) error {
	if err := cn.nc.SetDeadline(deadline); err != nil {
		return err
	}
	cn.buf = cn.buf[:0]
	for _, args := range cmds {
		cn.buf = appendArrayLen(cn.buf, len(args))
		for _, a := range args {
			cn.buf = appendBulk(cn.buf, a)
		}
	}
	if _, err := cn.nc.Write(cn.buf); err != nil {
		return err
	}
	for _, args := range cmds {
		line, err := cn.readLine()
		if err != nil {
			return err
		}
		switch line[0] {
		case '+':
		case '-':
			return fmt.Errorf("%s: %w", args[0], redisError(line[1:]))
		default:
			return fmt.Errorf("%s: %w", args[0], errProtocol)
		}
	}
	return nil
}

// exec runs the calls in one round trip on one connection, by the
// deadline, and sets each call's reply or err. A call that EVALSHA
// answered NOSCRIPT runs again with EVAL, in a second round trip. A
// connection that an idle spell broke (Redis restarted, a proxy dropped it)
// is found out by the round trip that reuses it: the calls it left without
// a reply are sent again once, on a new connection, as go-redis retries a
// command (MaxRetries): a script that ran before the break may then run
// twice.
func (p *respConns) exec(deadline time.Time, calls []*call) {
	hash, src := p.hash, p.src
	cn, reused, err := p.get(deadline)
	if err != nil {
		failCalls(calls, err)
		return
	}
	done, err := cn.roundTrip(deadline, calls, hash, "")
	if err != nil && reused && done == 0 && !isTimeout(err) {
		_ = cn.nc.Close()
		if cn, err = p.connect(deadline); err != nil {
			failCalls(calls, err)
			return
		}
		done, err = cn.roundTrip(deadline, calls, hash, "")
	}
	if err == nil {
		// EVALSHA fails with NOSCRIPT after a restart, SCRIPT FLUSH or
		// failover; EVAL runs the script and loads it for the next
		// round trips.
		var again []*call
		for _, c := range calls {
			if isNoScript(c.err) {
				again = append(again, c)
			}
		}
		if len(again) > 0 {
			for _, c := range again {
				c.err = nil
			}
			calls = again
			done, err = cn.roundTrip(deadline, calls, hash, src)
		}
	}
	if err != nil {
		_ = cn.nc.Close()
		failCalls(calls[done:], err)
		return
	}
	p.put(cn)
}

func failCalls(calls []*call, err error) {
	for _, c := range calls {
		c.reply, c.err = nil, err
	}
}

// roundTrip writes the calls, with EVALSHA hash or, if src is set, EVAL
// src, and reads their replies. It returns how many calls got a reply and
// the error that stopped it; after an error the connection is unusable.
func (cn *respConn) roundTrip(deadline time.Time, calls []*call, hash, src string) (int, error) {
	if err := cn.nc.SetDeadline(deadline); err != nil {
		return 0, err
	}
	cn.buf = cn.buf[:0]
	for _, c := range calls {
		cn.buf = appendTake(cn.buf, c, hash, src)
	}
	if _, err := cn.nc.Write(cn.buf); err != nil {
		return 0, err
	}
	for i, c := range calls {
		if err := cn.readTakeReply(c); err != nil {
			return i, err
		}
	}
	return len(calls), nil
}

// appendTake appends c's EVALSHA (or EVAL) command: the script, its keys,
// then c.nums as ARGV.
func appendTake(b []byte, c *call, hash, src string) []byte {
	b = appendArrayLen(b, 3+len(c.keys)+len(c.nums))
	if src == "" {
		b = appendBulk(b, "EVALSHA")
		b = appendBulk(b, hash)
	} else {
		b = appendBulk(b, "EVAL")
		b = appendBulk(b, src)
	}
	b = appendBulkInt(b, int64(len(c.keys)))
	for _, k := range c.keys {
		b = appendBulk(b, k)
	}
	for _, n := range c.nums {
		b = appendBulkInt(b, n)
	}
	return b
}

func appendArrayLen(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

func appendBulkInt(b []byte, n int64) []byte {
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], n, 10)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(d)), 10)
	b = append(b, '\r', '\n')
	b = append(b, d...)
	return append(b, '\r', '\n')
}

// readTakeReply reads one reply to take.lua: an array of integers, into
// c.reply, or an error reply, into c.err. Any other reply is a protocol
// error, returned, after which the connection is out of step.
func (cn *respConn) readTakeReply(c *call) error {
	line, err := cn.readLine()
	if err != nil {
		return err
	}
	switch line[0] {
	case '-':
		c.reply, c.err = nil, redisError(line[1:])
		return nil
	case '*':
	default:
		return errProtocol
	}
	n, err := parseInt(line[1:])
	if err != nil || n < 0 || n > int64(2+len(c.keys)) {
		return errProtocol
	}
	c.reply = c.replyBuf[:0]
	for range n {
		line, err := cn.readLine()
		if err != nil {
			return err
		}
		if line[0] != ':' {
			return errProtocol
		}
		v, err := parseInt(line[1:])
		if err != nil {
			return errProtocol
		}
		c.reply = append(c.reply, v)
	}
	c.err = nil
	return nil
}

// readLine returns the next line without its CRLF; it is valid until the
// next read.
func (cn *respConn) readLine() ([]byte, error) {
	line, err := cn.rd.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errProtocol
		}
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, errProtocol
	}
	return line[:len(line)-2], nil
}

// parseInt parses a RESP integer without allocating.
func parseInt(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, errProtocol
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, errProtocol
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' || n > (math.MaxInt64-int64(c-'0'))/10 {
			return 0, errProtocol
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// errProtocol is a reply this client does not expect from Redis.
var errProtocol = errors.New("ratelimit: unexpected reply from redis")

// redisError is an error reply of Redis. It is a redis.Error, as go-redis's
// are, so that redis.HasErrorPrefix and errors.As see it alike.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

var _ redis.Error = redisError("")

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
