package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

// heldJWKS serves key's JWKS, but holds every fetch until release is
// called, so that checks needing the key stay in flight.
func heldJWKS(t *testing.T, key *jwttest.Key) (jwksURL string, release func()) {
	t.Helper()
	held := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, key.JWKS())
	}))
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	t.Cleanup(func() {
		release()
		srv.Close()
	})
	return srv.URL, release
}

// remoteKeysPolicy is the tasks scenario with its keys at jwksURL.
func remoteKeysPolicy(jwksURL string) string {
	return strings.Replace(policyYAML("tasks-api", "unused", 1000), "    jwks: 'unused'", "    jwksURI: "+jwksURL, 1)
}

// metric returns the line of /metrics that starts with name (labels
// included), or "".
func (h *harness) metric(name string) string {
	_, body := get(h.t.(*testing.T), h.srv.Addr("metrics"), "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") {
			return line
		}
	}
	return ""
}

// mustCheck sends req on conn and fails the test on a gRPC error.
func mustCheck(t *testing.T, conn *grpc.ClientConn, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func (h *harness) dial() *grpc.ClientConn {
	h.t.Helper()
	conn, err := grpc.NewClient(h.srv.Addr("grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { conn.Close() })
	return conn
}

// TestInflightLimit: past the limit a check is refused at once with
// RESOURCE_EXHAUSTED (HTTP: 503), never queued; a connection flooding
// cannot take the room of another; health checks are never refused; and
// the checks held complete once they can.
func TestInflightLimit(t *testing.T) {
	key := jwttest.NewEd25519(t)
	jwksURL, release := heldJWKS(t, key)
	h := startWithKey(t, key, map[string]string{"tasks.yaml": remoteKeysPolicy(jwksURL)},
		func(o *server.Options) { o.MaxInflightChecks = 4 })
	token := h.token("alice", nil)
	held := checkRequest("/api/users/alice/tasks", token, nil, nil)

	// hold starts a check on conn that waits for the held key set.
	var wg sync.WaitGroup
	hold := func(conn *grpc.ClientConn) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), held)
			if err != nil {
				t.Errorf("held check: %v", err)
				return
			}
			if o := grpcOutcome(resp); o.status != 200 {
				t.Errorf("held check: %+v", o)
			}
		}()
	}
	inFlight := func(n int) {
		t.Helper()
		h.waitFor(fmt.Sprintf("%d checks in flight", n), func() bool {
			return h.metric("tollgate_checks_in_flight") == fmt.Sprintf("tollgate_checks_in_flight %d", n)
		})
	}

	// One connection holds half of the limit, and no more.
	a := h.conn
	hold(a)
	hold(a)
	inFlight(2)
	_, err := h.auth.Check(context.Background(), held)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a third check on a busy connection: %v, want RESOURCE_EXHAUSTED", err)
	}
	// Another connection is still served...
	b, c := h.dial(), h.dial()
	if o := grpcOutcome(mustCheck(t, b, checkRequest("/api/health", "", nil, nil))); o.status != 200 {
		t.Fatalf("a check on another connection: %+v", o)
	}
	// ...and so are health checks, on the busy connection too.
	hs, err := healthpb.NewHealthClient(a).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hs.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health on the busy connection: %v %v", hs, err)
	}

	// At the limit, every transport is refused.
	hold(b)
	hold(c)
	inFlight(4)
	if _, err := authv3.NewAuthorizationClient(h.dial()).Check(context.Background(), checkRequest("/api/health", "", nil, nil)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a check at the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	// A caller with a long deadline is refused too (by the Check handler,
	// not the tap: see tapRefusalMaxDeadline), its message unread.
	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(h.dial()).Check(long, checkRequest("/api/health", "", nil, nil)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a check with a long deadline at the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	o := h.httpOutcome("/api/health", "", nil)
	if o.status != http.StatusServiceUnavailable || o.headers["retry-after"] == "" {
		t.Fatalf("HTTP at the limit: %+v, want 503 with Retry-After", o)
	}
	wantBody(t, o, "unavailable")
	for _, want := range []string{
		`tollgate_checks_refused_total{transport="grpc"} 3`,
		`tollgate_checks_refused_total{transport="http"} 1`,
	} {
		name, _, _ := strings.Cut(want, " ")
		if got := h.metric(name); got != want {
			t.Errorf("metric %q, want %q", got, want)
		}
	}

	// Once the keys arrive, the held checks complete and free their places.
	release()
	wg.Wait()
	inFlight(0)
	if o := grpcOutcome(h.check(held)); o.status != 200 {
		t.Fatalf("a check after the flood: %+v", o)
	}
}

// largestRealisticCheckRequest is the largest CheckRequest Envoy sends at
// its default limits: 100 headers (max_request_headers_count) of 60 KiB
// in all (max_request_headers_kb) with an 8 KiB path, the path again in
// its own field, addresses with SPIFFE principals, a client certificate,
// TLS session, context extensions and dynamic metadata.
func largestRealisticCheckRequest(token string) *authv3.CheckRequest {
	path := "/api/users/alice/tasks/1?q=" + strings.Repeat("a", 8<<10)
	headers := map[string]string{
		":authority": "api.example.com", ":method": "GET", ":path": path, ":scheme": "https",
		"authorization": "Bearer " + token,
		"cookie":        strings.Repeat("c", 8<<10),
		"user-agent":    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	}
	size := 0
	for k, v := range headers {
		size += len(k) + len(v)
	}
	for i := 0; len(headers) < 100; i++ {
		name := fmt.Sprintf("x-custom-header-%02d", i)
		headers[name] = strings.Repeat("v", (60<<10-size)/(100-7)-len(name))
	}
	cert := url.QueryEscape("-----BEGIN CERTIFICATE-----\n" + strings.Repeat("MIIFazCCA1OgAwIBAgIUb3Jp\n", 80) + "-----END CERTIFICATE-----\n")
	ext := map[string]string{}
	for i := range 10 {
		ext[fmt.Sprintf("extension-%d", i)] = strings.Repeat("e", 100)
	}
	meta, _ := structpb.NewStruct(map[string]any{"principal": "spiffe://cluster.local/ns/shop/sa/web", "claims": strings.Repeat("m", 1<<10)})
	peer := func(ip string, port uint32, principal string) *authv3.AttributeContext_Peer {
		return &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
			Principal: principal,
			Labels:    map[string]string{"app": "web", "version": "v1"},
		}
	}
	src := peer("192.0.2.7", 51234, "spiffe://cluster.local/ns/shop/sa/web")
	src.Certificate = cert
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      src,
		Destination: peer("10.0.12.34", 8443, "spiffe://cluster.local/ns/shop/sa/tasks-api"),
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "8f5c1e0e-2f0b-4b7e-9a51-6d1c2f3a4b5c", Method: "GET", Host: "api.example.com", Path: path,
				Scheme: "https", Protocol: "HTTP/2", Headers: headers,
			},
		},
		ContextExtensions: ext,
		MetadataContext:   &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": meta}},
		TlsSession:        &authv3.AttributeContext_TLSSession{Sni: "api.example.com"},
	}}
}

// TestLargestRealisticCheckRequestFits: the receive limit admits the
// largest CheckRequest Envoy sends at its default limits, with room to
// spare, and refuses a larger message before deciding it.
func TestLargestRealisticCheckRequestFits(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1000)})
	large := largestRealisticCheckRequest(h.token("alice", nil))
	size := proto.Size(large)
	t.Logf("largest realistic CheckRequest: %d bytes (%.1f KiB); limit %d KiB", size, float64(size)/1024, server.DefaultMaxRequestBytes>>10)
	if size*2 > server.DefaultMaxRequestBytes {
		t.Fatalf("the largest realistic CheckRequest (%d bytes) leaves less than half of the limit (%d) spare", size, server.DefaultMaxRequestBytes)
	}
	if o := grpcOutcome(h.check(large)); o.status != 200 {
		t.Fatalf("largest realistic CheckRequest: %+v", o)
	}

	tooLarge := checkRequest("/api/users/alice/tasks", h.token("alice", nil), nil, nil)
	tooLarge.Attributes.Request.Http.Body = strings.Repeat("b", server.DefaultMaxRequestBytes)
	if _, err := h.auth.Check(context.Background(), tooLarge); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a CheckRequest over the limit: %v, want RESOURCE_EXHAUSTED", err)
	}
	// It was refused undecided, and the connection still serves.
	if got := h.metric(`tollgate_check_duration_seconds_count{transport="grpc"}`); !strings.HasSuffix(got, " 1") {
		t.Errorf("decisions after the oversized request: %q, want only the first", got)
	}
	if o := grpcOutcome(h.check(large)); o.status != 200 {
		t.Fatalf("after an oversized request: %+v", o)
	}
}

// TestMaxRequestBytes: the limit follows the option.
func TestMaxRequestBytes(t *testing.T) {
	h := start(t, map[string]string{"tasks.yaml": policyYAML("tasks-api", "$JWKS", 1000)},
		func(o *server.Options) { o.MaxRequestBytes = 8 << 10 })
	req := checkRequest("/api/health", "", nil, nil)
	if o := grpcOutcome(h.check(req)); o.status != 200 {
		t.Fatalf("a small check: %+v", o)
	}
	req.Attributes.Request.Http.Headers["cookie"] = strings.Repeat("c", 8<<10)
	if _, err := h.auth.Check(context.Background(), req); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a check over --max-request-bytes: %v, want RESOURCE_EXHAUSTED", err)
	}
}

// TestStreamsNoHandlerClaimsGiveTheirPlaceBack: streams the tap admitted
// but grpc-go answered without the Check handler (a method that does not
// exist) give their places back, at most a second or so after they end
// (slot_internal_test.go covers each such path), and the limit stays
// whole: two checks are then in flight at once and a third is refused.
func TestStreamsNoHandlerClaimsGiveTheirPlaceBack(t *testing.T) {
	key := jwttest.NewEd25519(t)
	jwksURL, release := heldJWKS(t, key)
	h := startWithKey(t, key, map[string]string{"tasks.yaml": remoteKeysPolicy(jwksURL)},
		func(o *server.Options) { o.MaxInflightChecks = 2 })
	inFlight := func(n int) {
		t.Helper()
		h.waitFor(fmt.Sprintf("%d checks in flight", n), func() bool {
			return h.metric("tollgate_checks_in_flight") == fmt.Sprintf("tollgate_checks_in_flight %d", n)
		})
	}
	conn := h.dial()
	answered := 0
	for range 100 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Nope", &authv3.CheckRequest{}, new(authv3.CheckResponse))
		cancel()
		switch status.Code(err) {
		case codes.Unimplemented:
			answered++
		case codes.ResourceExhausted: // the places are held
		default:
			t.Fatalf("an unknown method: %v", err)
		}
	}
	if answered == 0 {
		t.Fatal("no stream of an unknown method was admitted")
	}
	inFlight(0)

	held := checkRequest("/api/users/alice/tasks", h.token("alice", nil), nil, nil)
	var wg sync.WaitGroup
	for _, c := range []*grpc.ClientConn{h.dial(), h.dial()} {
		wg.Go(func() {
			resp, err := authv3.NewAuthorizationClient(c).Check(context.Background(), held)
			if err != nil || grpcOutcome(resp).status != 200 {
				t.Errorf("held check: %v %v", resp, err)
			}
		})
	}
	inFlight(2)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(h.dial()).Check(ctx, held); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third check: %v, want RESOURCE_EXHAUSTED", err)
	}
	release()
	wg.Wait()
	inFlight(0)
}
