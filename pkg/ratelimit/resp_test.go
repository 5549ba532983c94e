package ratelimit

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate-dev/tollgate/internal/redistest"
)

// On a single server the batcher sends take.lua on connections of its own;
// on Redis Cluster it stays on go-redis.
func TestRedisOwnConnectionsOnlyForASingleServer(t *testing.T) {
	for target, opts := range redisTargets(t) {
		t.Run(target, func(t *testing.T) {
			r := newRedisStore(t, opts)
			if _, own := r.batch.send.(*respConns); own != (opts.Addr != "") {
				t.Fatalf("own connections: %v, want %v", own, opts.Addr != "")
			}
		})
	}
}

// The store's own connections authenticate as go-redis does, with the
// password of --redis-password-file; a wrong password is an error that
// names AUTH, at once.
func TestRedisOwnConnectionsAuthenticate(t *testing.T) {
	srv := redistest.StartServerWithPassword(t, "s3cret")
	dir := t.TempDir()
	for _, tc := range []struct {
		name, password string
		wantErr        bool
	}{
		{"right password", "s3cret\n", false},
		{"wrong password", "guess\n", true},
	} {
		for _, pipelined := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, pipelined %v", tc.name, pipelined), func(t *testing.T) {
				pw := filepath.Join(dir, "pw")
				if err := os.WriteFile(pw, []byte(tc.password), 0o600); err != nil {
					t.Fatal(err)
				}
				r := newRedisStore(t, ClientOptions{Addr: srv.Addr, PasswordFile: pw})
				if pipelined {
					otherCaller(t, r)
				}
				limit := Limit{Key: fmt.Appendf(nil, "auth-%v", pipelined), Requests: 1, Period: time.Hour}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := r.Take(ctx, []Limit{limit}, nil)
				if tc.wantErr {
					if err == nil || !strings.Contains(err.Error(), "AUTH") {
						t.Fatalf("Take with a wrong password: %v, want an AUTH error", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Take: %v", err)
				}
				if res := mustTake(t, r, limit); res.Allowed {
					t.Fatalf("second take of a 1-request limit allowed: %+v", res)
				}
			})
		}
	}
}

// A connection that Redis dropped while idle (here by restarting) is found
// out by the next round trip, whose calls go again on a new connection:
// no decision fails because of it.
func TestRedisOwnConnectionsSurviveARestart(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined %v", pipelined), func(t *testing.T) {
			srv := redistest.StartServer(t)
			r := newRedisStore(t, ClientOptions{Addr: srv.Addr})
			if pipelined {
				otherCaller(t, r)
			}
			limit := Limit{Key: []byte("restart"), Requests: 2, Period: time.Hour}
			mustTake(t, r, limit)
			if idle := idleConns(r); idle != 1 {
				t.Fatalf("%d idle connections after a take, want 1", idle)
			}
			srv.Restart() // an empty dataset: the counter starts again
			for i, want := range []bool{true, true, false} {
				if res := mustTake(t, r, limit); res.Allowed != want {
					t.Fatalf("take %d after the restart: %+v, want allowed %v", i+1, res, want)
				}
			}
		})
	}
}

func idleConns(r *Redis) int {
	conns := r.batch.send.(*respConns)
	conns.mu.Lock()
	defer conns.mu.Unlock()
	return len(conns.idle)
}

// After Close, the store's connections are closed: none is left idle, and
// Redis counts only go-redis's own.
func TestRedisCloseClosesOwnConnections(t *testing.T) {
	r := newRedisStore(t, ClientOptions{Addr: redistest.StartServer(t).Addr})
	mustTake(t, r, Limit{Key: []byte("close"), Requests: 2, Period: time.Hour})
	clients := func() int {
		list, err := r.client.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(list, "\n")
	}
	before := clients() // go-redis's connection, and the store's
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return clients() == before-1 })
	if idle := idleConns(r); idle != 0 {
		t.Fatalf("%d idle connections after Close", idle)
	}
}

// TestReadTakeReply reads take.lua's replies, Redis's error replies, and
// rejects anything else as a protocol error.
func TestReadTakeReply(t *testing.T) {
	for name, tc := range map[string]struct {
		in        string
		keys      int
		want      []int64
		wantRedis string // an error reply
		wantErr   error  // a broken connection
	}{
		"allowed":             {in: "*3\r\n:1\r\n:1700000000000000\r\n:-5\r\n", keys: 1, want: []int64{1, 1700000000000000, -5}},
		"two limits":          {in: "*4\r\n:0\r\n:7\r\n:8\r\n:9\r\n", keys: 2, want: []int64{0, 7, 8, 9}},
		"short reply":         {in: "*2\r\n:1\r\n:7\r\n", keys: 1, want: []int64{1, 7}}, // takeReply rejects its length
		"noscript":            {in: "-NOSCRIPT No matching script.\r\n", keys: 1, wantRedis: "NOSCRIPT No matching script."},
		"too many values":     {in: "*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n", keys: 1, wantErr: errProtocol},
		"null array":          {in: "*-1\r\n", keys: 1, wantErr: errProtocol},
		"bulk string element": {in: "*3\r\n$1\r\n1\r\n:2\r\n:3\r\n", keys: 1, wantErr: errProtocol},
		"simple string":       {in: "+OK\r\n", keys: 1, wantErr: errProtocol},
		"not a number":        {in: "*3\r\n:1x\r\n:2\r\n:3\r\n", keys: 1, wantErr: errProtocol},
		"lone minus":          {in: "*3\r\n:-\r\n:2\r\n:3\r\n", keys: 1, wantErr: errProtocol},
		"no CR":               {in: "*3\n", keys: 1, wantErr: errProtocol},
		"empty line":          {in: "\r\n", keys: 1, wantErr: errProtocol},
		"overlong integer":    {in: "*3\r\n:123456789012345678901\r\n", keys: 1, wantErr: errProtocol},
		"int64 overflow":      {in: "*3\r\n:9223372036854775808\r\n", keys: 1, wantErr: errProtocol},
		"int64 max":           {in: "*3\r\n:9223372036854775807\r\n:-9223372036854775807\r\n:0\r\n", keys: 1, want: []int64{9223372036854775807, -9223372036854775807, 0}},
		"cut short":           {in: "*3\r\n:1\r\n", keys: 1, wantErr: errUnexpectedEOF},
	} {
		t.Run(name, func(t *testing.T) {
			c := &call{keys: make([]string, tc.keys)}
			err := readTakeReplyFrom(tc.in, c)
			switch {
			case tc.wantErr == errUnexpectedEOF:
				if err == nil {
					t.Fatalf("no error, want a read error")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
			case tc.wantRedis != "":
				var re redis.Error
				if err != nil || !errors.As(c.err, &re) || c.err.Error() != tc.wantRedis {
					t.Fatalf("err %v, call err %v, want the redis error %q", err, c.err, tc.wantRedis)
				}
			default:
				if err != nil || c.err != nil || fmt.Sprint(c.reply) != fmt.Sprint(tc.want) {
					t.Fatalf("reply %v (err %v, call err %v), want %v", c.reply, err, c.err, tc.want)
				}
			}
		})
	}
}

var errUnexpectedEOF = errors.New("any read error")

func readTakeReplyFrom(in string, c *call) error {
	cn := &respConn{rd: bufio.NewReaderSize(strings.NewReader(in), 64)}
	return cn.readTakeReply(c)
}

// FuzzReadTakeReply: whatever Redis, or whoever answers in its place,
// sends, the reader neither panics nor returns more values than the call
// has keys for.
func FuzzReadTakeReply(f *testing.F) {
	for _, s := range []string{"*3\r\n:1\r\n:2\r\n:3\r\n", "-ERR x\r\n", "*-1\r\n", "*3\r\n:-\r\n", "$3\r\nabc\r\n"} {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, in string, keys uint8) {
		c := &call{keys: make([]string, keys%8)}
		if err := readTakeReplyFrom(in, c); err == nil && len(c.reply) > 2+len(c.keys) {
			t.Fatalf("%d values for %d keys", len(c.reply), len(c.keys))
		}
	})
}

// TestAppendTake: the command as it goes to Redis.
func TestAppendTake(t *testing.T) {
	c := &call{keys: []string{"tollgate:{a}", "tollgate:{b}"}, nums: []int64{1, 3600000000, 0, -1, 12}}
	got := string(appendTake(nil, c, "abc", ""))
	want := "*10\r\n$7\r\nEVALSHA\r\n$3\r\nabc\r\n$1\r\n2\r\n$12\r\ntollgate:{a}\r\n$12\r\ntollgate:{b}\r\n" +
		"$1\r\n1\r\n$10\r\n3600000000\r\n$1\r\n0\r\n$2\r\n-1\r\n$2\r\n12\r\n"
	if got != want {
		t.Fatalf("EVALSHA:\n%q\nwant\n%q", got, want)
	}
	if got := string(appendTake(nil, c, "abc", "return 1")); !strings.HasPrefix(got, "*10\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n2\r\n") {
		t.Fatalf("EVAL: %q", got)
	}
}

// Resilient's budget bounds a Take of the Redis store by a deadline of the
// store's own (takeBy), not a context: a caller without a deadline still
// gets the fallback's answer when Redis hangs, whether its call goes on its
// own goroutine or in a pipeline. The store's client and pipelines would
// wait 10 s.
func TestResilientBudgetBoundsRedisTakes(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined %v", pipelined), func(t *testing.T) {
			srv, store := patientRedis(t)
			store.batch.start(1)
			t.Cleanup(func() { _ = store.Close() })
			if pipelined {
				otherCaller(t, store)
			}
			r, err := NewResilient(store, nil, ResilientOptions{OnError: OnErrorDeny, Budget: 20 * time.Millisecond, FailureThreshold: 100})
			if err != nil {
				t.Fatal(err)
			}
			limit := Limit{Key: []byte("budget"), Requests: 5, Period: time.Hour}
			if res := mustTake(t, r, limit); !res.Allowed || res.Degraded {
				t.Fatalf("before the hang: %+v, want allowed by Redis", res)
			}
			srv.Pause()
			t.Cleanup(srv.Resume) // before Close, which waits for the pipelines
			start := time.Now()
			res := mustTake(t, r, limit)
			if d := time.Since(start); d >= answersWithin {
				t.Fatalf("Take while Redis hangs took %s, want an answer within %s", d, answersWithin)
			}
			if res.Allowed || !res.Degraded {
				t.Fatalf("Take while Redis hangs: %+v, want the fallback's denial", res)
			}
		})
	}
}

// Over TLS the store's own connections are go-redis's dialer's: the same
// handshake and verification. Decisions count exactly on both paths.
func TestRedisOwnConnectionsOverTLS(t *testing.T) {
	srv := redistest.StartServerTLS(t)
	for _, pipelined := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelined %v", pipelined), func(t *testing.T) {
			r := newRedisStoreOn(t, redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: srv.TLS}))
			if _, own := r.batch.send.(*respConns); !own {
				t.Fatal("no own connections for a TLS server")
			}
			if pipelined {
				otherCaller(t, r)
			}
			limit := Limit{Key: fmt.Appendf(nil, "tls-%v", pipelined), Requests: 2, Period: time.Hour}
			for i, want := range []bool{true, true, false} {
				if res := mustTake(t, r, limit); res.Allowed != want {
					t.Fatalf("take %d over TLS: %+v, want allowed %v", i+1, res, want)
				}
			}
		})
	}
	// A client that does not trust the server's certificate gets an error.
	r := newRedisStoreOn(t, redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.Take(ctx, []Limit{{Key: []byte("untrusted"), Requests: 1, Period: time.Hour}}, nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Take with an untrusted certificate: %v, want a certificate error", err)
	}
}

// A pipeline through go-redis (Redis Cluster's path) whose connection
// cannot authenticate reports that error to its callers, not an empty
// reply.
func TestRedisGoRedisPipelineReportsAuthError(t *testing.T) {
	srv := redistest.StartServerWithPassword(t, "s3cret")
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("guess"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRedisStore(t, ClientOptions{Addr: srv.Addr, PasswordFile: pw})
	r.batch.send.close()
	r.batch.send = &pipelineSender{client: r.client, hash: r.scripts.take.Hash(), src: takeLua} // as on Redis Cluster
	otherCaller(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := r.Take(ctx, []Limit{{Key: []byte("auth"), Requests: 1, Period: time.Hour}}, nil)
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("pipelined Take with a wrong password: %v, want WRONGPASS", err)
	}
}
