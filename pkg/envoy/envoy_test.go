package envoy_test

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/envoy"
)

func TestRequest(t *testing.T) {
	tests := map[string]struct {
		http *authv3.AttributeContext_HttpRequest
		want decision.Request
	}{
		"fields of the HTTP request": {
			http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "api.example.com", Path: "/a?b=c",
				Headers: map[string]string{"authorization": "Bearer x"}, Id: "6c9f0e1a-5b1d-4f3e-9d0a-2f8b7c1e4a55"},
			want: decision.Request{Method: "GET", Host: "api.example.com", Path: "/a?b=c", ID: "6c9f0e1a-5b1d-4f3e-9d0a-2f8b7c1e4a55"},
		},
		"pseudo-headers when the fields are empty": {
			http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{":method": "PUT", ":authority": "h", ":path": "/p"}},
			want: decision.Request{Method: "PUT", Host: "h", Path: "/p"},
		},
		"raw header map with repeated headers": {
			http: &authv3.AttributeContext_HttpRequest{Method: "GET", Host: "h", Path: "/p", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "X-Owner", RawValue: []byte("alice")},
				{Key: "x-owner", Value: "bob"},
			}}},
			want: decision.Request{Method: "GET", Host: "h", Path: "/p"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := envoy.Request(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request:           &authv3.AttributeContext_Request{Http: tc.http},
				Source:            &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "192.0.2.1"}}}},
				ContextExtensions: map[string]string{"policy": "shop/p"},
			}})
			if got.Method != tc.want.Method || got.Host != tc.want.Host || got.Path != tc.want.Path || got.ID != tc.want.ID {
				t.Errorf("got %s %s %s id %q, want %s %s %s id %q", got.Method, got.Host, got.Path, got.ID, tc.want.Method, tc.want.Host, tc.want.Path, tc.want.ID)
			}
			if got.SourceIP != "192.0.2.1" || got.PolicyKey != "shop/p" {
				t.Errorf("source %q policy %q", got.SourceIP, got.PolicyKey)
			}
			if tc.http.HeaderMap != nil && got.Headers["x-owner"] != "alice,bob" {
				t.Errorf("x-owner = %q, want the values joined", got.Headers["x-owner"])
			}
		})
	}
}

func TestResponse(t *testing.T) {
	for status, code := range map[int]codes.Code{200: codes.OK, 400: codes.InvalidArgument, 401: codes.Unauthenticated, 403: codes.PermissionDenied, 429: codes.ResourceExhausted, 503: codes.Unavailable} {
		if got := envoy.Code(status); got != code {
			t.Errorf("Code(%d) = %v, want %v", status, got, code)
		}
	}
	allow := envoy.Response(&decision.Decision{Allowed: true, Status: 200,
		UpstreamHeaders: []decision.Header{{Name: "x-user-id", Value: "alice"}},
		RemoveHeaders:   []string{"x-user-plan"},
		ResponseHeaders: []decision.Header{{Name: "x-ratelimit-remaining", Value: "9"}}})
	ok := allow.GetOkResponse()
	if allow.GetStatus().GetCode() != 0 || len(ok.GetHeaders()) != 1 || ok.GetHeaders()[0].GetHeader().GetValue() != "alice" ||
		ok.GetHeaders()[0].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD ||
		len(ok.GetHeadersToRemove()) != 1 || len(ok.GetResponseHeadersToAdd()) != 1 {
		t.Errorf("allow response: %v", allow)
	}
	deny := envoy.Response(&decision.Decision{Status: 429, Code: decision.CodeRateLimited, Message: "m",
		ResponseHeaders: []decision.Header{{Name: "retry-after", Value: "3"}}})
	d := deny.GetDeniedResponse()
	if d.GetStatus().GetCode() != 429 || d.GetBody() != `{"error":"rate_limited","message":"m"}` || len(d.GetHeaders()) != 2 ||
		d.GetHeaders()[1].GetHeader().GetKey() != "content-type" || codes.Code(deny.GetStatus().GetCode()) != codes.ResourceExhausted {
		t.Errorf("deny response: %v", deny)
	}
}

// TestResponseHeaderOptions checks that every header becomes an
// overwriting option, in order, whether it fits the inline arrays or not,
// and that a denial's end with its content-type.
func TestResponseHeaderOptions(t *testing.T) {
	headers := func(prefix string, n int) []decision.Header {
		var hs []decision.Header
		for i := range n {
			hs = append(hs, decision.Header{Name: fmt.Sprintf("%s-%d", prefix, i), Value: fmt.Sprint(i)})
		}
		return hs
	}
	for _, n := range [][2]int{{0, 0}, {2, 3}, {3, 5}, {4, 5}, {9, 1}} {
		t.Run(fmt.Sprintf("%d upstream and %d response headers", n[0], n[1]), func(t *testing.T) {
			up, down := headers("x-up", n[0]), headers("x-down", n[1])
			ok := envoy.Response(&decision.Decision{Allowed: true, Status: 200, UpstreamHeaders: up, ResponseHeaders: down}).GetOkResponse()
			checkOptions(t, ok.GetHeaders(), up)
			checkOptions(t, ok.GetResponseHeadersToAdd(), down)
		})
	}
	for _, n := range []int{0, 1, 2, 4, 6, 7, 9} {
		t.Run(fmt.Sprintf("a denial with %d response headers", n), func(t *testing.T) {
			down := headers("x-down", n)
			denied := envoy.Response(&decision.Decision{Status: 429, Code: decision.CodeRateLimited, Message: "m", ResponseHeaders: down}).GetDeniedResponse()
			checkOptions(t, denied.GetHeaders(), append(down, decision.Header{Name: "content-type", Value: "application/json"}))
			if denied.GetBody() != `{"error":"rate_limited","message":"m"}` || denied.GetStatus().GetCode() != 429 {
				t.Errorf("denied response: %v", denied)
			}
		})
	}
}

// checkOptions checks that got are overwriting options of the headers want.
func checkOptions(t *testing.T, got []*corev3.HeaderValueOption, want []decision.Header) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d options, want %d", len(got), len(want))
	}
	for i, o := range got {
		if o.GetHeader().GetKey() != want[i].Name || o.GetHeader().GetValue() != want[i].Value ||
			o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("option %d: %v, want %s: %s overwriting", i, o, want[i].Name, want[i].Value)
		}
	}
}
