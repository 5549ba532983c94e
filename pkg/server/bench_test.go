package server_test

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tollgate-dev/tollgate/internal/redistest"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/envoy"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

// bareServer is the baseline: a grpc-go Authorization server that answers
// a constant (by default OK) without looking at the request.
type bareServer struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

var okResponse = &authv3.CheckResponse{
	Status:       &rpcstatus.Status{Code: int32(codes.OK)},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (s bareServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.resp, nil
}

func startBare(b *testing.B) string { return startBareWith(b, okResponse) }

// startBareWith starts a bare server answering resp, with the options of
// tollgate's gRPC server that change what a call allocates.
func startBareWith(b *testing.B, resp *authv3.CheckResponse) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))))
	authv3.RegisterAuthorizationServer(srv, bareServer{resp: resp})
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// allocPolicy is BenchmarkDecide's scenario (pkg/decision): an owner
// check, a per-user and a per-ip limit, two forwarded claims.
const allocPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: tasks-api
  namespace: shop
spec:
  hosts: ["api.example.com"]
  pathPrefix: /api
  jwt:
    issuer: ` + issuer + `
    jwks: '$JWKS'
    forwardClaims:
      x-user-id: sub
      x-user-plan: plan
  limits:
    - name: per-ip
      requests: 1000000000
      period: 1h
      by: ip
  rules:
    - name: own-tasks
      path: /api/users/{userId}/tasks/**
      owner:
        path: userId
      limits:
        - name: per-user
          requests: 1000000000
          period: 1h
          by: user
`

// engineDecider decides with an Engine alone, without metrics or logs.
type engineDecider struct{ e *decision.Engine }

func (d engineDecider) Decide(ctx context.Context, req *decision.Request, out *decision.Decision) {
	d.e.DecideInto(ctx, req, out)
}

// BenchmarkCheckAdapter measures the Envoy adapter around the decision
// core: a CheckRequest in, its CheckResponse out, for an allowed check of
// allocPolicy (a cached token; memory store) and for a denial (no token).
// Its allocs/op less BenchmarkDecide's are the adapter's.
func BenchmarkCheckAdapter(b *testing.B) {
	h := start(b, map[string]string{"tasks.yaml": allocPolicy})
	srv := envoy.NewServer(engineDecider{h.srv.Engine()})
	ctx := context.Background()
	for name, tc := range map[string]struct {
		req  *authv3.CheckRequest
		code codes.Code
	}{
		"allow":        {checkRequest("/api/users/alice/tasks/42", h.token("alice", map[string]any{"plan": "premium"}), nil, nil), codes.OK},
		"deny/missing": {checkRequest("/api/users/alice/tasks/42", "", nil, nil), codes.Unauthenticated},
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := srv.Check(ctx, tc.req)
				if err != nil || codes.Code(resp.GetStatus().GetCode()) != tc.code {
					b.Fatalf("Check: %v %v", resp, err)
				}
			}
		})
	}
}

// BenchmarkGRPCCheckAllocs counts the allocations of an allowed Check of
// allocPolicy over real gRPC, client and server in this process, 8 at a
// time on one connection, each with Envoy's default ext_authz timeout
// (200 ms, sent as grpc-timeout): tollgate's, and a bare server's that
// returns tollgate's CheckResponse as a constant, in alternating rounds.
// Both pay grpc-go and protobuf alike (the same request and response
// bytes), so extra-allocs/op is what tollgate adds: admission, adapter,
// decision and metrics.
func BenchmarkGRPCCheckAllocs(b *testing.B) {
	h := start(b, map[string]string{"tasks.yaml": allocPolicy})
	req := checkRequest("/api/users/alice/tasks/42", h.token("alice", map[string]any{"plan": "premium"}), nil, nil)
	resp := h.check(req)
	if len(resp.GetOkResponse().GetHeaders()) != 2 || len(resp.GetOkResponse().GetResponseHeadersToAdd()) != 5 {
		b.Fatalf("Check: %v", resp)
	}
	bare := pairedClient(b, startBareWith(b, resp))
	tollgate := pairedClient(b, h.srv.Addr("grpc"))
	mallocs := func(client authv3.AuthorizationClient, n int) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
					resp, err := client.Check(ctx, req)
					cancel()
					if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
						b.Errorf("Check: %v %v", resp.GetStatus(), err)
						return
					}
				}
			})
		}
		wg.Wait()
		runtime.ReadMemStats(&after)
		return after.Mallocs - before.Mallocs
	}
	mallocs(bare, 1000)
	mallocs(tollgate, 1000)
	var mBare, mTollgate uint64
	n := 0
	const round = 2000
	b.ResetTimer()
	for n < b.N {
		mBare += mallocs(bare, round)
		mTollgate += mallocs(tollgate, round)
		n += round
	}
	b.ReportMetric(float64(mBare)/float64(n), "bare-allocs/op")
	b.ReportMetric(float64(mTollgate)/float64(n), "tollgate-allocs/op")
	b.ReportMetric((float64(mTollgate)-float64(mBare))/float64(n), "extra-allocs/op")
}

// BenchmarkGRPCCheck compares tollgate's Check (a cached token, ownership,
// a per-user limit on the memory store, identity and rate-limit headers)
// with the bare server, over loopback with the same client, in one run:
// report tollgate/bare ns/op as the throughput ratio.
func BenchmarkGRPCCheck(b *testing.B) {
	h := start(b, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1_000_000_000)})
	req := checkRequest("/api/users/alice/tasks/42", h.token("alice", nil), map[string]string{"x-user-id": "bob"}, nil)
	b.Run("bare", func(b *testing.B) { checkLoad(b, startBare(b), req, 16) })
	b.Run("tollgate", func(b *testing.B) { checkLoad(b, h.srv.Addr("grpc"), req, 16) })
}

// BenchmarkGRPCCheckDenyFlood is a flood of one deny reason (alice asks
// for bob's tasks, 403) with deny lines logged at info: past the burst,
// the lines are held back and counted, at no cost per check.
func BenchmarkGRPCCheckDenyFlood(b *testing.B) {
	h := start(b, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1_000_000_000)})
	req := checkRequest("/api/users/bob/tasks/42", h.token("alice", nil), nil, nil)
	checkLoadWant(b, h.srv.Addr("grpc"), req, 16, codes.PermissionDenied)
}

// checkLoad sends req to addr from parallelism×GOMAXPROCS goroutines over
// one connection, as Envoy does, until b.N checks are answered OK.
func checkLoad(b *testing.B, addr string, req *authv3.CheckRequest, parallelism int) {
	checkLoadWant(b, addr, req, parallelism, codes.OK)
}

// checkLoadWant is checkLoad for checks answered with the status code want.
func checkLoadWant(b *testing.B, addr string, req *authv3.CheckRequest, parallelism int, want codes.Code) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	if _, err := client.Check(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Check(context.Background(), req)
			if err != nil || resp.GetStatus().GetCode() != int32(want) {
				b.Errorf("Check: %v %v", resp.GetStatus(), err)
				return
			}
		}
	})
}

// BenchmarkGRPCCheckQuotaStore compares decision throughput end to end
// through gRPC Check with the memory store and with Redis, at concurrency
// 64, in one run: report redis/memory as a throughput ratio.
func BenchmarkGRPCCheckQuotaStore(b *testing.B) {
	redis := redistest.StartServer(b)
	policy := policyYAML("tasks-api", "$JWKS", 1_000_000_000)
	for _, store := range []struct {
		name   string
		mutate func(*server.Options)
	}{
		{"memory", func(*server.Options) {}},
		{"redis", func(o *server.Options) {
			o.QuotaStore, o.Redis, o.OnStoreError = "redis", ratelimit.ClientOptions{Addr: redis.Addr}, "deny"
		}},
	} {
		b.Run(store.name, func(b *testing.B) {
			h := start(b, map[string]string{"tasks.yaml": policy}, store.mutate)
			req := checkRequest("/api/users/alice/tasks/42", h.token("alice", nil), nil, nil)
			checkLoad(b, h.srv.Addr("grpc"), req, 32) // 2 CPUs x 32 = 64 concurrent checks
		})
	}
}

// BenchmarkGRPCCheckPaired alternates short rounds of the bare server and
// tollgate (memory store), and of tollgate with the memory and the Redis
// store, so that both sides of each ratio see the same machine: this VM's
// speed drifts by tens of percent within a minute. It reports the
// throughput ratios tollgate/bare and redis/memory.
func BenchmarkGRPCCheckPaired(b *testing.B) {
	redis := redistest.StartServer(b)
	policy := policyYAML("tasks-api", "$JWKS", 1_000_000_000)
	mem := start(b, map[string]string{"tasks.yaml": policy})
	red := start(b, map[string]string{"tasks.yaml": policy}, func(o *server.Options) {
		o.QuotaStore, o.Redis, o.OnStoreError = "redis", ratelimit.ClientOptions{Addr: redis.Addr}, "deny"
	})
	req := checkRequest("/api/users/alice/tasks/42", mem.token("alice", nil), nil, nil)
	redReq := checkRequest("/api/users/alice/tasks/42", red.token("alice", nil), nil, nil)
	bare := pairedClient(b, startBare(b))
	tollgate := pairedClient(b, mem.srv.Addr("grpc"))
	redisClient := pairedClient(b, red.srv.Addr("grpc"))

	var tBare, tTollgate, tMemory, tRedis time.Duration
	const round = 2000
	b.ResetTimer()
	for i := 0; i < b.N; i += round {
		tBare += pairedRound(b, bare, req, round, 32)
		tTollgate += pairedRound(b, tollgate, req, round, 32)
		tMemory += pairedRound(b, tollgate, req, round, 64)
		tRedis += pairedRound(b, redisClient, redReq, round, 64)
	}
	b.ReportMetric(float64(tBare)/float64(tTollgate), "tollgate/bare")
	b.ReportMetric(float64(tMemory)/float64(tRedis), "redis/memory")
}

func pairedClient(b *testing.B, addr string) authv3.AuthorizationClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// pairedRound sends n checks from concurrency goroutines and returns the
// wall time they took.
func pairedRound(b *testing.B, client authv3.AuthorizationClient, req *authv3.CheckRequest, n, concurrency int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				resp, err := client.Check(context.Background(), req)
				if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
					b.Errorf("Check: %v %v", resp.GetStatus(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}
