package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tollgate-dev/tollgate/pkg/server"
)

// TestShutdownDelay: once shutdown begins, health is NOT_SERVING at once
// (gRPC and /readyz) while checks keep being served, on existing and new
// connections, until the delay ends; then the server stops.
func TestShutdownDelay(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1000)},
		func(o *server.Options) { o.ShutdownDelay = time.Hour })
	health := healthpb.NewHealthClient(h.conn)
	healthStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil {
			t.Fatalf("health: %v", err)
		}
		return resp.GetStatus()
	}
	if s := healthStatus(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before shutdown: %v", s)
	}
	token := h.token("alice", nil)

	h.cancel() // SIGTERM
	h.waitFor("gRPC health NOT_SERVING", func() bool { return healthStatus() == healthpb.HealthCheckResponse_NOT_SERVING })
	code, body := get(t, h.srv.Addr("health"), "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"draining":true`) {
		t.Fatalf("/readyz while draining: %d %s", code, body)
	}
	for i := range 20 {
		if o := grpcOutcome(h.check(checkRequest("/api/users/alice/tasks", token, nil, nil))); o.status != 200 {
			t.Fatalf("check %d while draining: %+v", i, o)
		}
	}
	if o := h.httpOutcome("/api/users/alice/tasks", token, nil); o.status != 200 {
		t.Fatalf("HTTP check while draining: %+v", o)
	}
	if o := grpcOutcome(mustCheck(t, h.dial(), checkRequest("/api/users/alice/tasks", token, nil, nil))); o.status != 200 {
		t.Fatalf("check on a new connection while draining: %+v", o)
	}
	select {
	case err := <-h.done:
		t.Fatalf("Run returned during the delay: %v", err)
	default:
	}

	h.srv.EndShutdownDelay()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		h.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the delay ended")
	}
}
