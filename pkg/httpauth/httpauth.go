// Package httpauth adapts the decision core to HTTP forward
// authentication: Envoy's HTTP ext_authz, nginx auth_request, Traefik
// ForwardAuth and Caddy forward_auth.
//
// Any request to the endpoint is authorized as if it were the original
// request, which exactly one convention describes (a Mode): the headers
// Traefik and Caddy set, the headers the nginx example sets, or the
// request line itself (Envoy). A client can send any header it likes, so
// only the convention the proxy overwrites can be believed: a request
// that lacks its headers, repeats one, or also carries the other
// convention's URI or method header with another value is answered 400.
package httpauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// A Decider authorizes one request: it writes the decision to d, as
// decision.Engine.DecideInto does.
type Decider interface {
	Decide(ctx context.Context, req *decision.Request, d *decision.Decision)
}

// HeaderRemove lists, comma-separated, the headers Envoy's HTTP ext_authz
// removes from the upstream request.
const HeaderRemove = "x-envoy-auth-headers-to-remove"

// A Mode says which headers describe the original request (serve
// --forward-auth).
type Mode int

// Modes.
const (
	// Forwarded (the default; Traefik ForwardAuth, Caddy forward_auth):
	// X-Forwarded-Method, X-Forwarded-Host and X-Forwarded-Uri, each
	// required.
	Forwarded Mode = iota
	// Original (nginx auth_request): X-Original-URI and X-Original-Method,
	// required, and the host from X-Original-Host, else Host.
	Original
	// RequestLine (Envoy's HTTP ext_authz): the request's own method,
	// target and Host; forwarding headers are ignored.
	RequestLine
)

// modeNames maps the names --forward-auth takes to modes.
var modeNames = map[string]Mode{"forwarded": Forwarded, "original": Original, "request": RequestLine}

// ParseMode returns the mode named s: "forwarded", "original" or "request".
func ParseMode(s string) (Mode, error) {
	if m, ok := modeNames[s]; ok {
		return m, nil
	}
	return 0, fmt.Errorf("forward-auth mode %q: want forwarded, original or request", s)
}

// String returns the mode's name.
func (m Mode) String() string {
	for name, v := range modeNames {
		if v == m {
			return name
		}
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ReasonForwardAuth is the reason of a 400 for a request whose forwarding
// headers do not describe one original request.
const ReasonForwardAuth = "invalid_forward_auth"

// Headers of the two conventions.
const (
	forwardedMethod = "X-Forwarded-Method"
	forwardedHost   = "X-Forwarded-Host"
	forwardedURI    = "X-Forwarded-Uri"
	originalMethod  = "X-Original-Method"
	originalHost    = "X-Original-Host"
	originalURI     = "X-Original-URI"
)

// nginxDirective says how the nginx example sets each X-Original header.
var nginxDirective = map[string]string{
	originalURI:    "proxy_set_header X-Original-URI $request_uri;",
	originalMethod: "proxy_set_header X-Original-Method $request_method;",
	originalHost:   "proxy_set_header X-Original-Host $host;",
}

// An Error is a forward-auth request that does not describe one original
// request. Its message is fixed text that names headers, never their
// values, and is the deny body's message.
type Error struct{ msg string }

func (e *Error) Error() string { return "httpauth: " + e.msg }

// Options configures a Handler.
type Options struct {
	// Mode says which headers describe the original request.
	Mode Mode
	// OnReject, when set, is called with the 400 of every request whose
	// forwarding headers are rejected before any decision (for metrics and
	// logs).
	OnReject func(r *http.Request, d *decision.Decision)
}

// Handler answers forward-auth requests.
type Handler struct {
	decider Decider
	opts    Options
}

// NewHandler returns a Handler deciding with d.
func NewHandler(d Decider, opts Options) *Handler { return &Handler{decider: d, opts: opts} }

// ServeHTTP answers 200 with identity headers to allow, or the deny status,
// headers and JSON body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := Request(r, h.opts.Mode)
	if err != nil {
		d := Rejection(err)
		if h.opts.OnReject != nil {
			h.opts.OnReject(r, &d)
		}
		WriteDecision(w, &d)
		return
	}
	var d decision.Decision
	h.decider.Decide(r.Context(), &req, &d)
	WriteDecision(w, &d)
}

// Rejection returns the 400 decision for an error of Request.
func Rejection(err error) decision.Decision {
	msg := "the forwarding headers do not describe one request"
	if e := (*Error)(nil); errors.As(err, &e) {
		msg = e.msg
	}
	return decision.Decision{Status: http.StatusBadRequest, Code: decision.CodeBadRequest, Reason: ReasonForwardAuth, Message: msg}
}

// Request converts a forward-auth request into the decision core's Request,
// reading the original method, host and URI as mode says. It returns an
// *Error when mode's headers are missing or repeated, or when the other
// convention's URI or method header disagrees with them.
func Request(r *http.Request, mode Mode) (decision.Request, error) {
	var method, host, uri string
	switch mode {
	case Forwarded:
		var err error
		if method, err = required(r, forwardedMethod, "the proxy must send the original method (Traefik ForwardAuth and Caddy forward_auth do)"); err != nil {
			return decision.Request{}, err
		}
		if host, err = required(r, forwardedHost, "the proxy must send the original host (Traefik ForwardAuth and Caddy forward_auth do)"); err != nil {
			return decision.Request{}, err
		}
		if uri, err = required(r, forwardedURI, "the proxy must send the original URI (Traefik ForwardAuth and Caddy forward_auth do)"); err != nil {
			return decision.Request{}, err
		}
		if err := agree(r, originalURI, uri, forwardedURI); err != nil {
			return decision.Request{}, err
		}
		if err := agree(r, originalMethod, method, forwardedMethod); err != nil {
			return decision.Request{}, err
		}
	case Original:
		var err error
		if uri, err = required(r, originalURI, "in nginx: "+nginxDirective[originalURI]); err != nil {
			return decision.Request{}, err
		}
		if method, err = required(r, originalMethod, "in nginx: "+nginxDirective[originalMethod]); err != nil {
			return decision.Request{}, err
		}
		switch vs := r.Header.Values(originalHost); len(vs) {
		case 0:
			host = r.Host
		case 1:
			host = vs[0]
		default:
			return decision.Request{}, &Error{originalHost + " is given more than once"}
		}
		if err := agree(r, forwardedURI, uri, originalURI); err != nil {
			return decision.Request{}, err
		}
		if err := agree(r, forwardedMethod, method, originalMethod); err != nil {
			return decision.Request{}, err
		}
	case RequestLine:
		method, host, uri = r.Method, r.Host, r.RequestURI
		if uri == "" {
			uri = r.URL.RequestURI()
		}
	default:
		return decision.Request{}, &Error{"unknown forward-auth mode"}
	}
	uri, err := originForm(uri, host)
	if err != nil {
		return decision.Request{}, err
	}

	headers := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		if len(vs) > 0 {
			headers[lowerName(k)] = strings.Join(vs, ",")
		}
	}
	source := r.RemoteAddr
	if h, _, err := net.SplitHostPort(source); err == nil {
		source = h
	}
	return decision.Request{
		Method:   method,
		Host:     host,
		Path:     uri,
		Headers:  headers,
		SourceIP: source,
	}, nil
}

// commonNames are header names that browsers, proxies and tollgate's
// policies commonly use, lower case.
var commonNames = [...]string{
	"accept", "accept-encoding", "accept-language", "authorization", "cache-control", "connection",
	"content-length", "content-type", "cookie", "forwarded", "host", "origin", "pragma", "referer",
	"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "sec-fetch-dest", "sec-fetch-mode",
	"sec-fetch-site", "traceparent", "tracestate", "upgrade-insecure-requests", "user-agent",
	"x-api-key", "x-b3-parentspanid", "x-b3-sampled", "x-b3-spanid", "x-b3-traceid",
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-method", "x-forwarded-port",
	"x-forwarded-prefix", "x-forwarded-proto", "x-forwarded-server", "x-forwarded-uri",
	"x-http-method", "x-http-method-override", "x-method-override", "x-original-host",
	"x-original-method", "x-original-uri", "x-real-ip", "x-request-id",
}

// lowerNames maps the canonical form of each of commonNames (as net/http
// keys headers) to the name itself.
var lowerNames = func() map[string]string {
	m := make(map[string]string, len(commonNames))
	for _, n := range commonNames {
		m[textproto.CanonicalMIMEHeaderKey(n)] = n
	}
	return m
}()

// lowerName returns k in lower case, without allocating for common names.
func lowerName(k string) string {
	if n, ok := lowerNames[k]; ok {
		return n
	}
	return strings.ToLower(k)
}

// required returns the one value of header name; a missing, empty or
// repeated header is an *Error whose message ends with hint.
func required(r *http.Request, name, hint string) (string, error) {
	switch vs := r.Header.Values(name); {
	case len(vs) > 1:
		return "", &Error{name + " is given more than once"}
	case len(vs) == 0 || vs[0] == "":
		return "", &Error{name + " is required; " + hint}
	default:
		return vs[0], nil
	}
}

// agree returns an *Error when the request carries header name (the other
// convention's) with any value but want, the value of trusted.
func agree(r *http.Request, name, want, trusted string) error {
	for _, v := range r.Header.Values(name) {
		if v != want {
			return &Error{name + " disagrees with " + trusted + "; only " + trusted + " is trusted"}
		}
	}
	return nil
}

// originForm turns an absolute-form request target (a proxy's
// "http://host/path?q") into its path and query; any other target is
// returned as is, raw, for the decision core to check. An absolute-form
// target must name the request's host: it would otherwise be a second,
// different description of the request.
func originForm(target, host string) (string, error) {
	if strings.HasPrefix(target, "/") {
		return target, nil
	}
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok || (!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https")) {
		return target, nil
	}
	authority, path := rest, "/"
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, path = rest[:i], rest[i:]
		if path[0] != '/' {
			path = "/" + path
		}
	}
	got, ok1 := policy.ParseAuthority(authority)
	want, ok2 := policy.ParseAuthority(host)
	if !ok1 || !ok2 || got != want {
		return "", &Error{"the absolute URI names another host than the request"}
	}
	return path, nil
}

// WriteDecision writes a Decision as a forward-auth response.
func WriteDecision(w http.ResponseWriter, d *decision.Decision) {
	h := w.Header()
	for _, x := range d.ResponseHeaders {
		h.Set(x.Name, x.Value)
	}
	if d.Allowed {
		for _, x := range d.UpstreamHeaders {
			h.Set(x.Name, x.Value)
		}
		if len(d.RemoveHeaders) > 0 {
			h.Set(HeaderRemove, strings.Join(d.RemoveHeaders, ","))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(d.Status)
	_, _ = io.WriteString(w, d.Body())
}
