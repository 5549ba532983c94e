package server

import (
	"context"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/tollgate-dev/tollgate/pkg/envoy"
)

// errOverloaded refuses a check past the in-flight limit.
var errOverloaded = status.Error(codes.ResourceExhausted, "tollgate: too many checks in flight; retry")

// tapRefusalMaxDeadline is the longest deadline of a stream that the tap
// refuses itself. grpc-go (1.85) keeps the timer of a stream refused by
// its tap until the stream's deadline, so a stream with a longer one is
// let through and refused by the Check handler, before its message is
// read. Envoy's ext_authz timeout is 200 ms by default.
const tapRefusalMaxDeadline = time.Second

// admitStream is the gRPC server's tap: it runs when a stream's headers
// arrive, before any of its message is read, and refuses the stream with
// RESOURCE_EXHAUSTED past the in-flight limit, so that a flood costs
// neither memory nor a queue. An admitted stream holds its place until it
// ends, and at most maxCheckDuration (see slot). Health checks are never
// refused.
func (s *Server) admitStream(ctx context.Context, info *tap.Info) (context.Context, error) {
	if strings.HasPrefix(info.FullMethodName, "/grpc.health.v1.Health/") {
		return ctx, nil
	}
	sl := &slot{Context: ctx, a: s.admission, sh: s.admission.shareOf(ctx)}
	dl, hasDeadline := ctx.Deadline()
	if !s.admission.acquire(sl.sh) {
		s.metrics.CheckRefused("grpc")
		if !hasDeadline || time.Until(dl) <= tapRefusalMaxDeadline {
			return nil, errOverloaded
		}
		sl.refused = true
		return sl, nil
	}
	var streamCtx context.Context = sl
	if !hasDeadline || time.Until(dl) > maxCheckDuration {
		streamCtx, sl.cancel = context.WithTimeout(sl, maxCheckDuration)
	}
	// The Check handler claims the slot and gives it back; when no
	// handler claims it, the reaper gives it back once ctx has ended,
	// which it does with the stream whichever way it ends. A list rather
	// than context.AfterFunc per stream: that allocates 4 times.
	s.admission.register(sl)
	return streamCtx, nil
}

// authorizationService is envoy.service.auth.v3.Authorization with Check
// served by a stream handler rather than a unary one, so that it runs
// before the CheckRequest is read: a stream the tap let through only to be
// refused is refused unread, and the stream's slot learns when the
// message has been read. On the wire it is the same unary method.
func (s *Server) authorizationService(srv *envoy.Server) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
		HandlerType: authv3.Authorization_ServiceDesc.HandlerType,
		Streams: []grpc.StreamDesc{{
			StreamName: "Check",
			Handler: func(_ any, stream grpc.ServerStream) error {
				return check(srv, stream)
			},
		}},
		Metadata: authv3.Authorization_ServiceDesc.Metadata,
	}
}

// check answers one Check stream.
func check(srv *envoy.Server, stream grpc.ServerStream) error {
	ctx := stream.Context()
	sl, _ := ctx.Value(slotKey{}).(*slot)
	if sl != nil {
		if sl.refused {
			return errOverloaded
		}
		if !sl.a.claim(sl) {
			// The reaper gave the place back: the stream has ended.
			return status.FromContextError(sl.Err()).Err()
		}
		defer sl.end()
	}
	req := new(authv3.CheckRequest)
	if err := stream.RecvMsg(req); err != nil {
		return err
	}
	if sl != nil {
		sl.read = true
	}
	resp, err := srv.Check(ctx, req)
	if err != nil {
		return err
	}
	return stream.SendMsg(resp)
}
