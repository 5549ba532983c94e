package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/envoy"
	"github.com/tollgate-dev/tollgate/pkg/metrics"
)

// waitInflight polls until a has n checks in flight, or fails t after a
// deadline: a slot never given back stays above n, one given back twice
// goes below it.
func waitInflight(t *testing.T, a *admission, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.inflight.Load() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d checks in flight, want %d", a.inflight.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSlotGivenBackOnce: a slot is given back by its handler when the
// handler claims it, by the reaper when its stream ends unclaimed, and
// never by both; the reaper leaves live unclaimed slots alone and stops
// once none is left.
func TestSlotGivenBackOnce(t *testing.T) {
	tests := map[string]struct {
		// steps run in order: "claim", "claim-refused" (the reaper took
		// it), "cancel" (the stream ends), "reap", "end" (the handler
		// gives it back).
		steps []string
		// inflight is what remains after the steps, before the hold.
		inflight int64
	}{
		"the handler claims and gives back":             {steps: []string{"claim", "cancel", "reap", "end"}, inflight: 0},
		"the handler gives back before the stream ends": {steps: []string{"claim", "end", "cancel", "reap"}, inflight: 0},
		"a live unclaimed slot is left to its handler":  {steps: []string{"reap", "claim", "end"}, inflight: 0},
		"an ended unclaimed slot is reaped":             {steps: []string{"cancel", "reap"}, inflight: 0},
		"a slot the reaper took is not the handler's":   {steps: []string{"cancel", "reap", "claim-refused"}, inflight: 0},
		"an unclaimed slot not yet ended is kept":       {steps: []string{"reap"}, inflight: 1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := newAdmission(4)
			// The reaper is run by hand: a tick an hour away never comes.
			a.reapEvery = time.Hour
			a.hold = time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sh := &share{}
			if !a.acquire(sh) {
				t.Fatal("not admitted")
			}
			sl := &slot{Context: ctx, a: a, sh: sh}
			a.register(sl)
			for _, step := range tc.steps {
				switch step {
				case "claim", "claim-refused":
					if got, want := a.claim(sl), step == "claim"; got != want {
						t.Fatalf("claim = %v, want %v", got, want)
					}
				case "cancel":
					cancel()
				case "reap":
					a.reap()
				case "end":
					sl.read = true
					sl.end()
				}
			}
			waitInflight(t, a, tc.inflight)
			if got := sh.inflight.Load(); got != tc.inflight {
				t.Errorf("the connection holds %d, want %d", got, tc.inflight)
			}
			// The reaper stays armed while slots are unclaimed, and
			// stops at its next run once none is.
			a.reap()
			a.mu.Lock()
			armed, listed := a.armed, a.unclaimed != nil
			a.mu.Unlock()
			if armed != listed {
				t.Errorf("reaper armed %v with unclaimed slots %v", armed, listed)
			}
		})
	}
}

// TestSlotsRacingTheReaper: streams end while their handlers claim them
// and the reaper runs; each place is given back exactly once.
func TestSlotsRacingTheReaper(t *testing.T) {
	a := newAdmission(1 << 20)
	a.reapEvery, a.hold = 50*time.Microsecond, 50*time.Microsecond
	shares := []*share{{}, {}, {}, {}}
	var wg sync.WaitGroup
	for i := range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		sh := shares[i%len(shares)]
		if !a.acquire(sh) {
			t.Fatal("not admitted")
		}
		sl := &slot{Context: ctx, a: a, sh: sh}
		a.register(sl)
		wg.Go(cancel)
		if i%3 != 0 { // the rest never see a handler
			wg.Go(func() {
				if a.claim(sl) {
					sl.read = i%2 == 0
					sl.end()
				}
			})
		}
	}
	wg.Wait()
	waitInflight(t, a, 0)
	for i, sh := range shares {
		if n := sh.inflight.Load(); n != 0 {
			t.Errorf("connection %d holds %d", i, n)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		armed := a.armed
		a.mu.Unlock()
		if !armed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reaper is still armed with no slot unclaimed")
		}
		time.Sleep(time.Millisecond)
	}
}

// gateDecider allows every check once gate is closed, and tells entered
// when a check is waiting for it.
type gateDecider struct {
	entered chan struct{}
	gate    chan struct{}
}

func (d gateDecider) Decide(ctx context.Context, _ *decision.Request, out *decision.Decision) {
	select {
	case d.entered <- struct{}{}:
	case <-ctx.Done():
	}
	select {
	case <-d.gate:
	case <-ctx.Done():
	}
	*out = decision.Decision{Status: 200}
}

// startAdmitting serves tollgate's gRPC server (tap, services, options)
// with an in-flight limit of max over a gateDecider, on a limitListener
// so that each connection has its own share; aborted streams keep their
// place for a millisecond and are reaped every millisecond.
func startAdmitting(t *testing.T, max int64) (*Server, string, gateDecider) {
	t.Helper()
	s := &Server{
		opts:      Options{MaxRequestBytes: DefaultMaxRequestBytes},
		admission: newAdmission(max),
		metrics:   metrics.New(),
		health:    newHealth(),
	}
	s.admission.hold, s.admission.reapEvery = time.Millisecond, time.Millisecond
	d := gateDecider{entered: make(chan struct{}, 16), gate: make(chan struct{})}
	srv := s.newGRPCServer(envoy.NewServer(d))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(newLimitListener(lis, 64, func(string) {}))
	t.Cleanup(srv.Stop)
	return s, lis.Addr().String(), d
}

// A rawConn speaks HTTP/2 to a gRPC server frame by frame, to send what
// grpc-go clients refuse to: a deadline already past, an encoding the
// server lacks, a malformed method name.
type rawConn struct {
	t      *testing.T
	c      net.Conn
	fr     *http2.Framer
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	stream uint32
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawConn{t: t, c: c, fr: http2.NewFramer(c, c), stream: 1}
	r.enc = hpack.NewEncoder(&r.hbuf)
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

// call sends an empty message to path on a new stream, with the extra
// header fields, and returns the grpc-status the stream ends with
// (CANCELLED when the server resets it with CANCEL).
func (r *rawConn) call(path string, extra ...hpack.HeaderField) codes.Code {
	r.t.Helper()
	id := r.stream
	r.stream += 2
	r.hbuf.Reset()
	fields := append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: "tollgate"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...)
	for _, f := range fields {
		if err := r.enc.WriteField(f); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndHeaders: true}); err != nil {
		r.t.Fatal(err)
	}
	// An empty message: not compressed, length 0.
	if err := r.fr.WriteData(id, true, make([]byte, 5)); err != nil {
		r.t.Fatal(err)
	}
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			r.t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				r.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				r.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			r.t.Fatalf("stream %d: GOAWAY %v", id, f.ErrCode)
		case *http2.RSTStreamFrame:
			if f.StreamID == id && f.ErrCode == http2.ErrCodeCancel {
				return codes.Canceled
			}
			if f.StreamID == id {
				r.t.Fatalf("stream %d: reset %v", id, f.ErrCode)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != id || !f.StreamEnded() {
				continue
			}
			code, err := strconv.Atoi(headerValue(f, "grpc-status"))
			if err != nil {
				r.t.Fatalf("stream %d ended without a grpc-status: %v", id, f.Fields)
			}
			return codes.Code(code)
		}
	}
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// TestSlotsOfStreamsNoHandlerClaims: grpc-go answers some streams that
// the tap admitted without running the Check handler; their places come
// back, once each, and the limit holds as before: 100 such streams later,
// two checks are served at once and a third is refused.
func TestSlotsOfStreamsNoHandlerClaims(t *testing.T) {
	const checkPath = "/envoy.service.auth.v3.Authorization/Check"
	type aborter func(t *testing.T, addr string) func() codes.Code
	raw := func(path string, extra ...hpack.HeaderField) aborter {
		return func(t *testing.T, addr string) func() codes.Code {
			r := dialRaw(t, addr)
			return func() codes.Code { return r.call(path, extra...) }
		}
	}
	client := func(call func(ctx context.Context, conn *grpc.ClientConn) error) aborter {
		return func(t *testing.T, addr string) func() codes.Code {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return func() codes.Code {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				return status.Code(call(ctx, conn))
			}
		}
	}
	tests := map[string]struct {
		abort aborter
		// want is how the stream ends, or, when set, or.
		want, or codes.Code
	}{
		"a grpc-encoding the server has no decompressor for": {
			abort: raw(checkPath, hpack.HeaderField{Name: "grpc-encoding", Value: "tollgate-unknown"}),
			want:  codes.Unimplemented,
		},
		"a deadline already past (grpc-timeout 0n)": {
			abort: raw(checkPath, hpack.HeaderField{Name: "grpc-timeout", Value: "0n"}),
			want:  codes.DeadlineExceeded,
		},
		"a deadline of 1 ns": {
			abort: raw(checkPath, hpack.HeaderField{Name: "grpc-timeout", Value: "1n"}),
			want:  codes.DeadlineExceeded,
			// The deadline is past as the tap returns, unless the clock
			// did not move: then grpc-go's timer resets the stream.
			or: codes.Canceled,
		},
		"a malformed method name": {
			abort: raw("/Check"),
			want:  codes.Unimplemented,
		},
		"an unknown method (grpc-go client)": {
			abort: client(func(ctx context.Context, conn *grpc.ClientConn) error {
				return conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Nope", &authv3.CheckRequest{}, new(authv3.CheckResponse))
			}),
			want: codes.Unimplemented,
		},
		"an unknown service (grpc-go client stream)": {
			abort: client(func(ctx context.Context, conn *grpc.ClientConn) error {
				cs, err := grpc.NewClientStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, conn, "/tollgate.Nope/Nope")
				if err != nil {
					return err
				}
				// io.EOF: the server has answered; RecvMsg says how.
				if err := cs.SendMsg(&authv3.CheckRequest{}); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				return cs.RecvMsg(new(authv3.CheckResponse))
			}),
			want: codes.Unimplemented,
		},
		"a reflection stream (another method, admitted, never claimed)": {
			abort: client(func(ctx context.Context, conn *grpc.ClientConn) error {
				rs, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
				if err != nil {
					return err
				}
				if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
					return err
				}
				if _, err := rs.Recv(); err != nil {
					return err
				}
				return rs.CloseSend()
			}),
			want: codes.OK,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, addr, d := startAdmitting(t, 2)
			a := s.admission
			abort := tc.abort(t, addr)
			for i := range 100 {
				// Each stream is admitted: the one before has given its
				// place back.
				if got := abort(); got != tc.want && (tc.or == codes.OK || got != tc.or) {
					t.Fatalf("stream %d: %v, want %v", i, got, tc.want)
				}
				waitInflight(t, a, 0)
			}
			checkCapacity(t, addr, a, d)
		})
	}
}

// checkCapacity checks that the limit of 2 is whole: two checks, on two
// connections, are in flight at once, and a third is refused.
func checkCapacity(t *testing.T, addr string, a *admission, d gateDecider) {
	t.Helper()
	dial := func() authv3.AuthorizationClient {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return authv3.NewAuthorizationClient(conn)
	}
	errs := make(chan error, 2)
	for range 2 {
		c := dial()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.Check(ctx, &authv3.CheckRequest{})
			if err == nil && codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				err = fmt.Errorf("status %v", resp.GetStatus())
			}
			errs <- err
		}()
	}
	for range 2 {
		select {
		case <-d.entered:
		case <-time.After(5 * time.Second):
			t.Fatal("two checks are not in flight at once")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := dial().Check(ctx, &authv3.CheckRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third check: %v, want RESOURCE_EXHAUSTED", err)
	}
	close(d.gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("a check in flight: %v", err)
		}
	}
	waitInflight(t, a, 0)
}
