package server

import (
	"context"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tollgate-dev/tollgate/pkg/envoy"
)

// serveGRPC starts the ext_authz, health and reflection services and
// returns their graceful stop.
func (s *Server) serveGRPC(errc chan<- error) func(context.Context) {
	srv := grpc.NewServer(
		// Envoy keeps few long-lived HTTP/2 connections: ping idle ones so
		// that dead peers are noticed, and let Envoy ping every 10s
		// without being told GOAWAY "too_many_pings".
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(10000),
		// Reuse handler goroutines: a fresh goroutine per check would grow
		// its stack during every decision, which costs more than deciding.
		grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))),
	)
	authv3.RegisterAuthorizationServer(srv, envoy.NewServer(observed{s: s, transport: "grpc"}))
	hs := s.health
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	go func() {
		if err := srv.Serve(s.grpcLis); err != nil {
			errc <- err
		}
	}()
	return func(ctx context.Context) {
		hs.Shutdown()
		done := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			srv.Stop()
		}
	}
}

// newHealth returns the gRPC health server, NOT_SERVING until policies are
// loaded, like /readyz.
func newHealth() *health.Server {
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return hs
}

// markServing sets the gRPC health of every service to SERVING.
func markServing(hs *health.Server) {
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
}
