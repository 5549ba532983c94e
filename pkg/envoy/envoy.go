// Package envoy adapts the decision core to Envoy's ext_authz v3 gRPC API
// (envoy.service.auth.v3.Authorization/Check).
package envoy

import (
	"context"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/tollgate-dev/tollgate/pkg/decision"
)

// A Decider authorizes one request: it writes the decision to d, as
// decision.Engine.DecideInto does.
type Decider interface {
	Decide(ctx context.Context, req *decision.Request, d *decision.Decision)
}

// PolicyExtension is the context_extensions key that selects a policy
// explicitly ("namespace/name").
const PolicyExtension = "policy"

// Server implements the Authorization service over a Decider.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	decider Decider
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// NewServer returns an Authorization server answering with d.
func NewServer(d Decider) *Server { return &Server{decider: d} }

// Check answers Envoy. A denial is a CheckResponse with a non-OK status and
// a DeniedHttpResponse, never a gRPC error: a gRPC error would make Envoy
// apply failure_mode_allow instead of tollgate's answer.
//
// An allowed Check allocates once (see exchange), and nothing is pooled:
// gRPC still reads the response after Check returns.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	x := new(exchange)
	x.req = Request(req)
	s.decider.Decide(ctx, &x.req, &x.d)
	return x.response(), nil
}

// Request converts a CheckRequest into the decision core's Request.
func Request(req *authv3.CheckRequest) decision.Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 {
		if hm := h.GetHeaderMap(); hm != nil {
			headers = headerMap(hm)
		}
	}
	host := h.GetHost()
	if host == "" {
		host = headers[":authority"]
	}
	method := h.GetMethod()
	if method == "" {
		method = headers[":method"]
	}
	path := h.GetPath()
	if path == "" {
		path = headers[":path"]
	}
	return decision.Request{
		Method:    method,
		Host:      host,
		Path:      path,
		Headers:   headers,
		SourceIP:  attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		PolicyKey: attrs.GetContextExtensions()[PolicyExtension],
		ID:        h.GetId(),
	}
}

// headerMap flattens Envoy's raw header map (sent when the filter sets
// encode_raw_headers): repeated headers are joined with commas.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if prev, ok := out[k]; ok {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}

// inlineOptions is the number of header options of an OK answer that fit
// its exchange; more are allocated. An allowed request usually has a few
// forwarded claims and five rate-limit headers (decision.HeaderLimit ...
// decision.HeaderRateLimit).
const inlineOptions = 8

// An exchange holds what one Check builds: the decision core's Request and
// Decision (whose header slices point into it) and every message of an OK
// answer, so that an allowed Check allocates once. The messages point to
// each other and are never copied.
type exchange struct {
	req decision.Request
	d   decision.Decision

	resp   authv3.CheckResponse
	status rpcstatus.Status
	wrap   authv3.CheckResponse_OkResponse
	ok     authv3.OkHttpResponse
	opts   [inlineOptions]corev3.HeaderValueOption
	values [inlineOptions]corev3.HeaderValue
	ptrs   [inlineOptions]*corev3.HeaderValueOption
	used   int // of opts, values and ptrs
}

// Response converts a Decision into Envoy's answer.
func Response(d *decision.Decision) *authv3.CheckResponse {
	x := &exchange{d: *d}
	return x.response()
}

// response converts x.d into Envoy's answer.
func (x *exchange) response() *authv3.CheckResponse {
	d := &x.d
	if !d.Allowed {
		return denied(d)
	}
	x.status.Code = int32(codes.OK)
	x.ok.Headers = x.headerOptions(d.UpstreamHeaders)
	x.ok.HeadersToRemove = d.RemoveHeaders
	x.ok.ResponseHeadersToAdd = x.headerOptions(d.ResponseHeaders)
	x.wrap.OkResponse = &x.ok
	x.resp.Status = &x.status
	x.resp.HttpResponse = &x.wrap
	return &x.resp
}

// headerOptions converts headers to overwriting header options, in x's
// arrays while they have room.
func (x *exchange) headerOptions(hs []decision.Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	if x.used+len(hs) > inlineOptions {
		return headerOptions(hs, 0)
	}
	out := x.ptrs[x.used : x.used+len(hs) : x.used+len(hs)]
	for i, h := range hs {
		out[i] = option(&x.opts[x.used+i], &x.values[x.used+i], h)
	}
	x.used += len(hs)
	return out
}

// A denial holds every message of a deny answer, so that building one
// allocates once (and its header options twice more when they are many).
// It comes in two sizes: most denials carry a challenge or nothing, a 429
// its six rate-limit headers, each with content-type.
type denial struct {
	resp   authv3.CheckResponse
	status rpcstatus.Status
	wrap   authv3.CheckResponse_DeniedResponse
	denied authv3.DeniedHttpResponse
	code   typev3.HttpStatus
}

// smallDenial and largeDenial are a denial with room for
// inlineSmallDenyOptions and inlineDenyOptions header options.
type smallDenial struct {
	denial
	opts   [inlineSmallDenyOptions]corev3.HeaderValueOption
	values [inlineSmallDenyOptions]corev3.HeaderValue
	ptrs   [inlineSmallDenyOptions]*corev3.HeaderValueOption
}

type largeDenial struct {
	denial
	opts   [inlineDenyOptions]corev3.HeaderValueOption
	values [inlineDenyOptions]corev3.HeaderValue
	ptrs   [inlineDenyOptions]*corev3.HeaderValueOption
}

// inlineDenyOptions is the number of header options of a deny answer that
// fit a largeDenial: the six rate-limit headers of a 429, and
// content-type; inlineSmallDenyOptions those that fit a smallDenial: a
// challenge or Retry-After, and content-type.
const (
	inlineDenyOptions      = 7
	inlineSmallDenyOptions = 2
)

// contentType is the deny body's content type, as a header.
var contentType = decision.Header{Name: "content-type", Value: "application/json"}

// denied converts a denial into Envoy's answer.
func denied(d *decision.Decision) *authv3.CheckResponse {
	if len(d.ResponseHeaders)+1 <= inlineSmallDenyOptions {
		x := new(smallDenial)
		return x.fill(d, x.opts[:], x.values[:], x.ptrs[:])
	}
	x := new(largeDenial)
	return x.fill(d, x.opts[:], x.values[:], x.ptrs[:])
}

// fill builds the answer to d in x, with its header options in opts,
// values and ptrs while they have room.
func (x *denial) fill(d *decision.Decision, opts []corev3.HeaderValueOption, values []corev3.HeaderValue, ptrs []*corev3.HeaderValueOption) *authv3.CheckResponse {
	x.status.Code, x.status.Message = int32(Code(d.Status)), d.Reason
	x.code.Code = typev3.StatusCode(d.Status)
	x.denied.Status = &x.code
	x.denied.Body = d.Body()
	if n := len(d.ResponseHeaders) + 1; n <= len(ptrs) {
		out := ptrs[:n:n]
		for i, h := range d.ResponseHeaders {
			out[i] = option(&opts[i], &values[i], h)
		}
		out[n-1] = option(&opts[n-1], &values[n-1], contentType)
		x.denied.Headers = out
	} else {
		x.denied.Headers = headerOptions(d.ResponseHeaders, 1)
		x.denied.Headers[n-1] = overwrite(contentType.Name, contentType.Value)
	}
	x.wrap.DeniedResponse = &x.denied
	x.resp.Status = &x.status
	x.resp.HttpResponse = &x.wrap
	return &x.resp
}

// option fills o and v as an overwriting option of header h and returns o.
func option(o *corev3.HeaderValueOption, v *corev3.HeaderValue, h decision.Header) *corev3.HeaderValueOption {
	v.Key, v.Value = h.Name, h.Value
	o.Header = v
	o.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return o
}

// Code maps a deny's HTTP status to its google.rpc code.
func Code(status int) codes.Code {
	switch status {
	case http.StatusOK:
		return codes.OK
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.PermissionDenied
	}
}

// headerOptions converts headers to overwriting header options, leaving
// extra nil slots at the end for the caller. The options and values are
// allocated in two blocks rather than two objects per header.
func headerOptions(hs []decision.Header, extra int) []*corev3.HeaderValueOption {
	if len(hs)+extra == 0 {
		return nil
	}
	opts := make([]corev3.HeaderValueOption, len(hs))
	values := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs), len(hs)+extra)
	for i, h := range hs {
		out[i] = option(&opts[i], &values[i], h)
	}
	return out[:len(hs)+extra]
}

// overwrite replaces any value of the header, so that a client can never
// smuggle its own copy of an identity header next to tollgate's. The
// deprecated append field stays unset: Envoy versions that predate
// append_action read unset as "do not append".
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
