package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
)

// observed wraps the engine with metrics and deny logs for one transport.
type observed struct {
	s         *Server
	transport string
}

// Decide decides and records the decision. Every deny is logged at info
// with policy, rule, reason and sub; never the token, and the path without
// its query, which may carry one. The would-be decision of a dryRun policy
// is logged beside it: at info when it would deny, at debug when it would
// allow.
func (o observed) Decide(ctx context.Context, req *decision.Request) decision.Decision {
	start := time.Now()
	d := o.s.engine.Decide(ctx, req)
	o.s.metrics.Decision(o.transport, &d, time.Since(start))
	if !d.Allowed {
		o.logDecision(ctx, slog.LevelInfo, "deny", req, d.Policy, d.Rule, d.Reason, d.Status, d.Subject)
	}
	if dr := &d.DryRun; dr.WouldDeny() {
		o.logDecision(ctx, slog.LevelInfo, "dry-run deny", req, dr.Policy, dr.Rule, dr.Reason, dr.Status, dr.Subject)
	} else if dr.Evaluated() && o.s.log.Enabled(ctx, slog.LevelDebug) {
		o.logDecision(ctx, slog.LevelDebug, "dry-run allow", req, dr.Policy, dr.Rule, dr.Reason, dr.Status, dr.Subject)
	}
	return d
}

// logDecision is kept out of Decide so that its large frame is only paid
// when something is logged.
func (o observed) logDecision(ctx context.Context, level slog.Level, msg string, req *decision.Request, policy, rule, reason string, status int, sub string) {
	path, _, _ := strings.Cut(req.Path, "?")
	path, _, _ = strings.Cut(path, "#")
	o.s.log.Log(ctx, level, msg,
		"transport", o.transport, "policy", policy, "rule", rule, "reason", reason,
		"status", status, "sub", sub,
		"method", req.Method, "host", req.Host, "path", path, "source", req.SourceIP)
}

func (s *Server) httpAuthHandler() http.Handler {
	o := observed{s: s, transport: "http"}
	return httpauth.NewHandler(o, httpauth.Options{
		Mode: s.opts.ForwardAuth,
		// A request whose forwarding headers are rejected reaches no
		// decision; count and log it as one.
		OnReject: func(r *http.Request, d *decision.Decision) {
			s.metrics.Decision(o.transport, d, 0)
			o.s.log.Info("deny", "transport", o.transport, "reason", d.Reason, "status", d.Status,
				"message", d.Message, "forwardAuth", s.opts.ForwardAuth.String(), "source", r.RemoteAddr)
		},
	})
}

func (s *Server) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.gatherer(), promhttp.HandlerOpts{}))
	return mux
}

// pprofHandler serves the runtime profiles of net/http/pprof, on a mux of
// its own rather than http.DefaultServeMux.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// healthHandler serves /healthz (live) and /readyz (ready once policies are
// loaded: files read and, with the controller, its caches synced and first
// list served). A quota store outage shows in the /readyz body, never in
// its status: every replica turning unready at once would make a Redis
// outage a total outage. The same holds for an unreachable API server:
// every replica keeps serving its last synced policies and stays ready.
func (s *Server) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ready := s.ready.Load()
		store := "up"
		if !s.quota.Up() {
			store = "down"
		}
		body := struct {
			Ready    bool `json:"ready"`
			Policies int  `json:"policies"`
			// PolicySource is files, kubernetes, files+kubernetes or
			// none; Warning says what none means.
			PolicySource string      `json:"policySource"`
			Warning      string      `json:"warning,omitempty"`
			QuotaStore   string      `json:"quotaStore"`
			Kubernetes   *kubeHealth `json:"kubernetes,omitempty"`
		}{Ready: ready, Policies: s.engine.Snapshot().Len(), PolicySource: s.policySource(), QuotaStore: store, Kubernetes: s.kubeHealth()}
		if body.PolicySource == policySourceNone {
			body.Warning = noPolicySourceWarning
		}
		w.Header().Set("Content-Type", "application/json")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(body)
	})
	return mux
}
