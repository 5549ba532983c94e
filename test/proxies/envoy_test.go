package proxies_test

import (
	"fmt"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/internal/deploy"
)

// The blank imports above register the typed configs the examples use, so
// that protojson can resolve their "@type"; a config of a type not
// imported here fails the test instead of being skipped.

// forwardingHeaders describe the original request in the forward-auth
// conventions. In Envoy's HTTP mode they can only come from the client.
var forwardingHeaders = []string{
	"x-forwarded-method", "x-forwarded-uri", "x-forwarded-host",
	"x-original-uri", "x-original-method", "x-original-host",
}

// methodOverrideHeaders change the method for many frameworks; tollgate
// must see them to authorize the overriding method.
var methodOverrideHeaders = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// envoyExample is one parsed Envoy bootstrap and its parts of interest.
type envoyExample struct {
	bootstrap *bootstrapv3.Bootstrap
	hcm       *hcmv3.HttpConnectionManager
	authz     *extauthzv3.ExtAuthz
	filters   []string // HTTP filter names, in order
	perRoute  []*extauthzv3.ExtAuthzPerRoute
}

func TestEnvoyBootstraps(t *testing.T) {
	tests := map[string]struct {
		file  string
		check func(t *testing.T, ex *envoyExample)
	}{
		"gRPC ext_authz to the grpc port, with a per-route policy": {
			file: "config/envoy/envoy.yaml",
			check: func(t *testing.T, ex *envoyExample) {
				g := ex.authz.GetGrpcService()
				if g == nil || g.GetEnvoyGrpc() == nil {
					t.Fatalf("ext_authz: want grpc_service.envoy_grpc, got %v", ex.authz.GetServices())
				}
				if d := g.GetTimeout(); d == nil || d.AsDuration() <= 0 {
					t.Errorf("ext_authz grpc_service: no timeout")
				}
				c := cluster(t, ex.bootstrap, g.GetEnvoyGrpc().GetClusterName())
				if c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
					t.Errorf("cluster %s: gRPC needs HTTP/2 (typed_extension_protocol_options)", c.GetName())
				}
				for _, a := range endpoints(c) {
					assertServicePort(t, "cluster "+c.GetName(), a.GetAddress(), a.GetPortValue(), deploy.PortGRPC)
				}
				// tollgate reports this service NOT_SERVING until its
				// policies load and from the start of a shutdown.
				var hc []string
				for _, h := range c.GetHealthChecks() {
					hc = append(hc, h.GetGrpcHealthCheck().GetServiceName())
				}
				if len(hc) != 1 || hc[0] != authv3.Authorization_ServiceDesc.ServiceName {
					t.Errorf("cluster %s health checks %q, want one gRPC check of %s", c.GetName(), hc, authv3.Authorization_ServiceDesc.ServiceName)
				}
				if len(ex.perRoute) == 0 {
					t.Fatal("no route sets ExtAuthzPerRoute context_extensions")
				}
				for _, pr := range ex.perRoute {
					ns, name, ok := strings.Cut(pr.GetCheckSettings().GetContextExtensions()["policy"], "/")
					if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
						t.Errorf("per-route context_extensions %v: want policy: <namespace>/<name>", pr.GetCheckSettings().GetContextExtensions())
					}
				}
			},
		},
		"HTTP ext_authz for --forward-auth request, to the http port": {
			file: "config/envoy/envoy-http.yaml",
			check: func(t *testing.T, ex *envoyExample) {
				h := ex.authz.GetHttpService()
				if h == nil {
					t.Fatalf("ext_authz: want http_service, got %v", ex.authz.GetServices())
				}
				if h.GetPathPrefix() != "" || h.GetPathOverride() != "" {
					t.Errorf("http_service rewrites the path (%q, %q): request mode authorizes the check request's own path", h.GetPathPrefix(), h.GetPathOverride())
				}
				if d := h.GetServerUri().GetTimeout(); d == nil || d.AsDuration() <= 0 {
					t.Errorf("http_service.server_uri: no timeout")
				}
				c := cluster(t, ex.bootstrap, h.GetServerUri().GetCluster())
				for _, a := range endpoints(c) {
					assertServicePort(t, "cluster "+c.GetName(), a.GetAddress(), a.GetPortValue(), deploy.PortHTTP)
				}
				if want := "http://" + deploy.ServiceHost + ":5001"; h.GetServerUri().GetUri() != want {
					t.Errorf("server_uri.uri %q, want %q", h.GetServerUri().GetUri(), want)
				}
				allowed := ex.authz.GetAllowedHeaders()
				for _, name := range methodOverrideHeaders {
					if !anyMatch(t, allowed, name) {
						t.Errorf("allowed_headers lacks %s: the upstream would honour an override tollgate never saw", name)
					}
				}
				for _, name := range forwardingHeaders {
					if anyMatch(t, allowed, name) {
						t.Errorf("allowed_headers passes %s, a client-controlled header in HTTP mode", name)
					}
				}
				resp := h.GetAuthorizationResponse()
				for _, c := range []struct {
					list  *matcherv3.ListStringMatcher
					field string
					names []string
				}{
					{resp.GetAllowedUpstreamHeaders(), "allowed_upstream_headers", []string{"x-user-id", "x-user-email"}},
					{resp.GetAllowedClientHeaders(), "allowed_client_headers", []string{"content-type", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit", "ratelimit-policy"}},
					{resp.GetAllowedClientHeadersOnSuccess(), "allowed_client_headers_on_success", []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit", "ratelimit-policy"}},
				} {
					for _, name := range c.names {
						if !anyMatch(t, c.list, name) {
							t.Errorf("%s lacks %s", c.field, name)
						}
					}
				}
				if anyMatch(t, resp.GetAllowedUpstreamHeaders(), "authorization") {
					t.Error("allowed_upstream_headers lets tollgate's response set Authorization")
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ex := loadEnvoyExample(t, tc.file)

			// Path normalization and header hygiene, as issue 9 and
			// SPEC's "Decision semantics → Path" require.
			if !ex.hcm.GetNormalizePath().GetValue() {
				t.Error("normalize_path is not true")
			}
			if !ex.hcm.GetMergeSlashes() {
				t.Error("merge_slashes is not true")
			}
			if got := ex.hcm.GetPathWithEscapedSlashesAction(); got != hcmv3.HttpConnectionManager_REJECT_REQUEST {
				t.Errorf("path_with_escaped_slashes_action %v, want REJECT_REQUEST", got)
			}
			if got := ex.hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); got != corev3.HttpProtocolOptions_REJECT_REQUEST {
				t.Errorf("headers_with_underscores_action %v, want REJECT_REQUEST", got)
			}

			// ext_authz as SPEC's "Kubernetes and packaging" requires.
			a := ex.authz
			if a.GetTransportApiVersion() != corev3.ApiVersion_V3 {
				t.Errorf("transport_api_version %v, want V3", a.GetTransportApiVersion())
			}
			if a.GetFailureModeAllow() {
				t.Error("failure_mode_allow is true: a tollgate outage would let every request through")
			}
			if got := a.GetStatusOnError().GetCode(); got != typev3.StatusCode_ServiceUnavailable {
				t.Errorf("status_on_error %v, want 503 (ServiceUnavailable)", got)
			}
			if a.GetWithRequestBody() != nil {
				t.Error("with_request_body is set; tollgate does not read bodies")
			}
			if !(len(ex.filters) >= 2 && ex.filters[0] == "envoy.filters.http.ext_authz" && ex.filters[len(ex.filters)-1] == "envoy.filters.http.router") {
				t.Errorf("http_filters %v: want ext_authz first and the router last", ex.filters)
			}
			tc.check(t, ex)
		})
	}
}

// TestEnvoyStrictParse shows that loadEnvoyBootstrap refuses what Envoy
// would refuse, so a green TestEnvoyBootstraps means something.
func TestEnvoyStrictParse(t *testing.T) {
	good := string(readExample(t, "config/envoy/envoy.yaml"))
	tests := map[string]struct{ from, to, want string }{
		"an unknown field":                         {"merge_slashes: true", "merge_slashes: true\n                merge_slashs: true", `unknown field "merge_slashs"`},
		"an unknown typed config":                  {"ext_authz.v3.ExtAuthz\n", "ext_authz.v3.NoSuchThing\n", "unable to resolve"},
		"an unknown field inside a typed config":   {"failure_mode_allow: false", "failure_mode_allow: false\n                      failure_mode_alow: true", `unknown field "failure_mode_alow"`},
		"a value a validation rule refuses":        {"connect_timeout: 1s", "connect_timeout: 0s", "Cluster.ConnectTimeout"},
		"a typed config a validation rule refuses": {"{code: ServiceUnavailable}", "{code: 42}", "HttpStatus.Code"},
		"an enum value that does not exist":        {"path_with_escaped_slashes_action: REJECT_REQUEST", "path_with_escaped_slashes_action: REJECT", "invalid value for enum"},
		"a duplicate key":                          {"merge_slashes: true", "merge_slashes: true\n                merge_slashes: false", `"merge_slashes" already set`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(good, tc.from) {
				t.Fatalf("example lacks %q", tc.from)
			}
			bad := strings.Replace(good, tc.from, tc.to, 1)
			_, err := parseEnvoyBootstrap([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %s", err, tc.want)
			}
		})
	}
}

// loadEnvoyExample parses an example and finds its connection manager,
// ext_authz filter and per-route ext_authz settings, failing the test when
// any is missing or there is more than one listener filter chain to choose
// from.
func loadEnvoyExample(t *testing.T, rel string) *envoyExample {
	t.Helper()
	b, err := parseEnvoyBootstrap(readExample(t, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	ex := &envoyExample{bootstrap: b}
	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || len(listeners[0].GetFilterChains()) != 1 {
		t.Fatalf("%s: want one listener with one filter chain", rel)
	}
	for _, f := range listeners[0].GetFilterChains()[0].GetFilters() {
		if m := unpack(t, f.GetTypedConfig()); m != nil {
			if hcm, ok := m.(*hcmv3.HttpConnectionManager); ok {
				ex.hcm = hcm
			}
		}
	}
	if ex.hcm == nil {
		t.Fatalf("%s: no http_connection_manager", rel)
	}
	for _, f := range ex.hcm.GetHttpFilters() {
		ex.filters = append(ex.filters, f.GetName())
		if a, ok := unpack(t, f.GetTypedConfig()).(*extauthzv3.ExtAuthz); ok {
			if ex.authz != nil {
				t.Fatalf("%s: two ext_authz filters", rel)
			}
			ex.authz = a
		}
	}
	if ex.authz == nil {
		t.Fatalf("%s: no ext_authz filter", rel)
	}
	for _, vh := range ex.hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if pr, ok := unpack(t, r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]).(*extauthzv3.ExtAuthzPerRoute); ok {
				ex.perRoute = append(ex.perRoute, pr)
			}
		}
	}
	return ex
}

// parseEnvoyBootstrap reads a YAML bootstrap the way Envoy does, strictly:
// no duplicate keys, no unknown fields, every "@type" resolved, and every
// message, typed configs included, valid by its protoc-gen-validate rules.
func parseEnvoyBootstrap(y []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := validateAll(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

// validateAll runs ValidateAll on m and, because a message's ValidateAll
// does not look inside google.protobuf.Any, on every typed config within
// it, recursively.
func validateAll(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	var inner error
	err := protorange.Range(m.ProtoReflect(), func(p protopath.Values) error {
		v := p.Index(-1).Value
		msg, ok := v.Interface().(protoreflect.Message)
		if !ok || msg.Descriptor().FullName() != "google.protobuf.Any" {
			return nil
		}
		a, ok := msg.Interface().(*anypb.Any)
		if !ok {
			return nil
		}
		x, err := a.UnmarshalNew()
		if err != nil {
			inner = fmt.Errorf("%s: %w", p.Path, err)
			return protorange.Terminate
		}
		if err := validateAll(x); err != nil {
			inner = fmt.Errorf("%s: %w", p.Path, err)
			return protorange.Terminate
		}
		return protorange.Break
	})
	if inner != nil {
		return inner
	}
	return err
}

// unpack returns the message in a, nil for a nil a.
func unpack(t *testing.T, a *anypb.Any) proto.Message {
	t.Helper()
	if a == nil {
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatalf("unpack %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

// cluster returns the static cluster called name.
func cluster(t *testing.T, b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

// endpoints returns the socket addresses of a cluster's static endpoints.
func endpoints(c *clusterv3.Cluster) []*corev3.SocketAddress {
	var out []*corev3.SocketAddress
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			out = append(out, lb.GetEndpoint().GetAddress().GetSocketAddress())
		}
	}
	return out
}

// anyMatch reports whether a header name matches one of the matchers.
// Only the matcher kinds the examples use are understood; any other fails
// the test rather than guessing.
func anyMatch(t *testing.T, l *matcherv3.ListStringMatcher, name string) bool {
	t.Helper()
	for _, m := range l.GetPatterns() {
		v, n := name, ""
		switch p := m.GetMatchPattern().(type) {
		case *matcherv3.StringMatcher_Exact:
			n = p.Exact
		case *matcherv3.StringMatcher_Prefix:
			n = p.Prefix
		default:
			t.Fatalf("matcher %v: the test understands exact and prefix only", m)
		}
		if m.GetIgnoreCase() {
			v, n = strings.ToLower(v), strings.ToLower(n)
		}
		if _, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok && v == n {
			return true
		}
		if _, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Prefix); ok && strings.HasPrefix(v, n) {
			return true
		}
	}
	return false
}
