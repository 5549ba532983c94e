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

const (
	// handshakeTimeout closes a connection that has not completed its
	// HTTP/2 (gRPC) or first request's headers (HTTP) handshake in time.
	handshakeTimeout = 5 * time.Second
	// maxCheckDuration bounds a check whose caller set no shorter deadline
	// (Envoy sends its ext_authz timeout as grpc-timeout): a stream that
	// trickles its message, or never sends it, gives its place up.
	maxCheckDuration = 15 * time.Second
	// maxGRPCHeaderBytes bounds a stream's gRPC metadata (Envoy sends a
	// few hundred bytes; the request's own headers are in the message).
	maxGRPCHeaderBytes = 16 << 10
)

// serveGRPC starts the ext_authz, health and reflection services and
// returns their graceful stop.
func (s *Server) serveGRPC(errc chan<- error) func(context.Context) {
	srv := s.newGRPCServer(envoy.NewServer(observed{s: s, transport: "grpc"}))
	hs := s.health
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

// newGRPCServer returns the gRPC server of the ext_authz service, which
// auth answers, and of the health and reflection services.
func (s *Server) newGRPCServer(auth *envoy.Server) *grpc.Server {
	const window = 64 << 10
	srv := grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// Envoy keeps few long-lived HTTP/2 connections: ping idle
			// ones so that dead peers are noticed.
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
			// A connection without a check for this long goes (GOAWAY,
			// nothing in flight is lost): it frees its place under
			// --max-connections, and Envoy reconnects on its next check.
			MaxConnectionIdle: 30 * time.Minute,
			// Reconnecting now and then spreads Envoy's connections over
			// replicas added since; the grace is far longer than a check.
			MaxConnectionAge:      time.Hour,
			MaxConnectionAgeGrace: 2 * maxCheckDuration,
		}),
		// Let Envoy ping every 10s without being told GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.MaxHeaderListSize(maxGRPCHeaderBytes),
		// A larger message is refused from its length prefix, before it is
		// read. The smallest static windows keep what a stream can send
		// ahead of being read to 64 KiB (dynamic ones grow to 16 MiB): a
		// larger message costs one round trip more.
		grpc.MaxRecvMsgSize(s.opts.MaxRequestBytes),
		grpc.StaticStreamWindowSize(window),
		grpc.StaticConnWindowSize(16*window),
		grpc.MaxConcurrentStreams(MaxStreamsPerConnection),
		// Envoy's checks are a few KiB: a small read buffer keeps an idle
		// connection cheap (the write buffer is shared by default).
		grpc.ReadBufferSize(8<<10),
		grpc.InTapHandle(s.admitStream),
		// Reuse handler goroutines: a fresh goroutine per check would grow
		// its stack during every decision, which costs more than deciding.
		grpc.NumStreamWorkers(uint32(4*runtime.GOMAXPROCS(0))),
	)
	srv.RegisterService(s.authorizationService(auth), nil)
	healthpb.RegisterHealthServer(srv, s.health)
	reflection.Register(srv)
	return srv
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
