// Package httpauth adapts the decision core to HTTP forward authentication:
// Envoy's HTTP ext_authz, nginx auth_request and Traefik ForwardAuth.
//
// Any request is authorized as if it were the original request. Method,
// host and URI come from X-Forwarded-Method, X-Forwarded-Host and
// X-Forwarded-Uri (or X-Original-URI) when present, otherwise from the
// request itself, which is what Envoy's HTTP mode sends.
package httpauth

import (
	"context"
	"net"
	"net/http"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/decision"
)

// A Decider authorizes one request.
type Decider interface {
	Decide(ctx context.Context, req *decision.Request) decision.Decision
}

// HeaderRemove lists, comma-separated, the headers Envoy's HTTP ext_authz
// removes from the upstream request.
const HeaderRemove = "x-envoy-auth-headers-to-remove"

// Handler answers forward-auth requests.
type Handler struct {
	decider Decider
}

// NewHandler returns a Handler deciding with d.
func NewHandler(d Decider) *Handler { return &Handler{decider: d} }

// ServeHTTP answers 200 with identity headers to allow, or the deny status,
// headers and JSON body.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Request(r)
	d := h.decider.Decide(r.Context(), &req)
	WriteDecision(w, &d)
}

// Request converts a forward-auth request into the decision core's Request.
func Request(r *http.Request) decision.Request {
	headers := make(map[string]string, len(r.Header)+1)
	for k, vs := range r.Header {
		if len(vs) > 0 {
			headers[strings.ToLower(k)] = strings.Join(vs, ",")
		}
	}
	method := first(headers["x-forwarded-method"], r.Method)
	host := first(headers["x-forwarded-host"], r.Host)
	uri := first(headers["x-forwarded-uri"], headers["x-original-uri"], r.RequestURI)
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	uri = originForm(uri)
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
	}
}

// originForm turns an absolute-form request target (a proxy's
// "http://host/path?q") into its path and query; any other target is
// returned as is, raw, for the decision core to normalize.
func originForm(target string) string {
	if strings.HasPrefix(target, "/") {
		return target
	}
	scheme, rest, ok := strings.Cut(target, "://")
	if !ok || (!strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https")) {
		return target
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		if rest[i] == '?' {
			return "/" + rest[i:]
		}
		return rest[i:]
	}
	return "/"
}

func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
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
	body := d.Body()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(d.Status)
	_, _ = w.Write(body)
}
