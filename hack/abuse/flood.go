package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawCodec sends pre-encoded CheckRequests as they are and discards the
// answers, so that a flood of large messages costs the client no encoding.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return nil }
func (rawCodec) Name() string                         { return "proto" }

// A floodSpec is one flood: concurrency callers over conns connections,
// each sending CheckRequests of size bytes (0: the normal request) in a
// loop.
type floodSpec struct {
	title       string
	conns       int
	concurrency int
	size        int
	// held is how many gRPC and HTTP connections, each, are opened and
	// used once before the flood, and held through it.
	held int
}

// outcomes counts calls by gRPC code.
type outcomes struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *outcomes) add(local map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	for k, n := range local {
		o.counts[k] += n
	}
}

func (o *outcomes) String() string {
	var parts []string
	for k, n := range o.counts {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (o *outcomes) total() int {
	n := 0
	for _, v := range o.counts {
		n += v
	}
	return n
}

// floodScenario starts a server, measures the normal client alone, then
// under the flood, and prints both with the server's peak memory.
func floodScenario(ctx context.Context, c *config, fx *fixture, out io.Writer, spec floodSpec) error {
	fmt.Fprintln(out, spec.title)
	msg := fx.normal
	if spec.size > 0 {
		var err error
		if msg, err = fx.sized(spec.size); err != nil {
			return err
		}
	}
	srv, err := startServer(ctx, c, fx, strings.Fields(spec.title)[0], 0)
	if err != nil {
		return err
	}
	defer srv.stop()
	normal, err := startProber(c, fx, srv.grpc)
	if err != nil {
		return err
	}
	defer normal.close()
	base, err := normal.run(2 * time.Second)
	if err != nil {
		return err
	}
	if spec.held > 0 {
		release, err := holdConnections(srv, fx, spec.held)
		if err != nil {
			return err
		}
		defer release()
	}
	_, basePeak, err := srv.memory()
	if err != nil {
		return err
	}

	// The flood's calls carry deadlines of their own: the end of the flood
	// cancels them rather than shrinking their grpc-timeout towards zero.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	time.AfterFunc(c.duration, cancel)
	conns := make([]*grpc.ClientConn, spec.conns)
	for i := range conns {
		if conns[i], err = dial(srv.grpc); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	var (
		flood   outcomes
		wg      sync.WaitGroup
		started atomic.Int64
	)
	start := time.Now()
	for i := range spec.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			defer flood.add(local)
			conn := conns[i%len(conns)]
			for fctx.Err() == nil {
				started.Add(1)
				cctx, ccancel := fctx, context.CancelFunc(func() {})
				if c.floodDeadline > 0 {
					cctx, ccancel = context.WithTimeout(fctx, c.floodDeadline)
				}
				err := conn.Invoke(cctx, checkMethod, msg, new(struct{}), grpc.ForceCodecV2(rawCodec{}))
				ccancel()
				if fctx.Err() != nil {
					return // the flood's end cancels calls in flight
				}
				key := status.Code(err).String()
				if c.verbose && err != nil {
					key += " (" + status.Convert(err).Message() + ")"
				}
				local[key]++
			}
		}()
	}
	var maxRSS atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for fctx.Err() == nil {
			if rss, _, err := srv.memory(); err == nil && rss > maxRSS.Load() {
				maxRSS.Store(rss)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	under, err := normal.run(c.duration)
	cancel()
	wg.Wait()
	<-sampled
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	rss, peak, err := srv.memory()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  server RSS: peak %.0f MiB (%.0f MiB before the flood; %.0f MiB at its end)\n", mib(max(peak, maxRSS.Load())), mib(basePeak), mib(rss))
	fmt.Fprintf(out, "  flood: %d calls answered in %.1fs (%.0f/s): %s\n", flood.total(), elapsed.Seconds(), float64(flood.total())/elapsed.Seconds(), flood.String())
	fmt.Fprintf(out, "  normal client alone:       %s\n", base)
	fmt.Fprintf(out, "  normal client under flood: %s\n", under)
	return nil
}

// holdConnections opens n gRPC connections and n HTTP ones to srv, sends
// one check on each, and keeps them open until release.
func holdConnections(srv *server, fx *fixture, n int) (release func(), err error) {
	var conns []*grpc.ClientConn
	var clients []*http.Client
	release = func() {
		for _, c := range conns {
			c.Close()
		}
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}
	for range n {
		conn, err := dial(srv.grpc)
		if err != nil {
			release()
			return nil, err
		}
		conns = append(conns, conn)
		if _, err := checkOnce(authv3.NewAuthorizationClient(conn), fx.request); err != nil {
			release()
			return nil, fmt.Errorf("held gRPC connection %d: %w", len(conns), err)
		}
		client := &http.Client{Transport: &http.Transport{}}
		clients = append(clients, client)
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.http+"/", nil)
		req.Header = forwardAuthHeader(fx)
		resp, err := client.Do(req)
		if err != nil {
			release()
			return nil, fmt.Errorf("held HTTP connection %d: %w", len(clients), err)
		}
		resp.Body.Close()
	}
	return release, nil
}

func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// checkOnce sends req and returns how long the answer took, or an error
// when the call failed or the answer was not an allow.
func checkOnce(client authv3.AuthorizationClient, req *authv3.CheckRequest) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t0 := time.Now()
	resp, err := client.Check(ctx, req)
	took := time.Since(t0)
	if err != nil {
		return took, err
	}
	if code := resp.GetStatus().GetCode(); code != 0 {
		return took, fmt.Errorf("denied: %s", codes.Code(code))
	}
	return took, nil
}

// errorClass names an error for counting: its gRPC code, or the error.
func errorClass(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return err.Error()
}

// probeResult is what the normal client saw.
type probeResult struct {
	latencies []time.Duration
	errors    outcomes
}

func (p *probeResult) String() string {
	if len(p.latencies) == 0 {
		return fmt.Sprintf("no check answered; errors: %s", p.errors.String())
	}
	l := slices.Clone(p.latencies)
	slices.Sort(l)
	q := func(f float64) time.Duration { return l[min(int(f*float64(len(l))), len(l)-1)] }
	s := fmt.Sprintf("%d checks, p50 %.2f ms, p99 %.2f ms, max %.2f ms", len(l), ms(q(.5)), ms(q(.99)), ms(l[len(l)-1]))
	if n := p.errors.total(); n > 0 {
		s += fmt.Sprintf("; %d errors: %s", n, p.errors.String())
	}
	return s
}

// probe checks the normal request on conn, one at a time with interval
// between, for d or until ctx ends, and records each latency; a call that
// fails counts as an error, not a latency. Each call may take 5 s.
func probe(ctx context.Context, conn *grpc.ClientConn, req *authv3.CheckRequest, d, interval time.Duration) *probeResult {
	p := &probeResult{}
	errs := map[string]int{}
	client := authv3.NewAuthorizationClient(conn)
	end := time.Now().Add(d)
	for time.Now().Before(end) && ctx.Err() == nil {
		took, err := checkOnce(client, req)
		if err != nil {
			errs[errorClass(err)]++
		} else {
			p.latencies = append(p.latencies, took)
		}
		time.Sleep(interval)
	}
	p.errors.add(errs)
	return p
}
