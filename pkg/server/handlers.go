package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// observed wraps the engine with metrics and decision logs for one
// transport.
type observed struct {
	s         *Server
	transport string
}

// Decide decides and records the decision. Every deny is logged at info
// and every allow at debug, with the request id, policy, rule, reason,
// the limit of a 429 and the token's sub; never the token, and the path
// without its query, which may carry one. Deny lines are rate-limited per
// reason (Options.DenyLog); the lines held back are counted and the counts
// logged every Options.DenyLogReport. The would-be decision of a dryRun
// policy is logged beside it, the same way. A line that is not logged
// costs no allocation.
func (o observed) Decide(ctx context.Context, req *decision.Request, d *decision.Decision) {
	start := time.Now()
	o.s.engine.DecideInto(ctx, req, d)
	o.s.metrics.Decision(o.transport, d, time.Since(start))
	if d.Allowed {
		if o.s.log.Enabled(ctx, slog.LevelDebug) {
			o.logDecision(ctx, slog.LevelDebug, "allow", req, line{d.Policy, d.Rule, d.Reason, d.Status, d.Subject, d.Limit})
		}
	} else if o.s.log.Enabled(ctx, slog.LevelInfo) && o.s.denyLog.Allow(d.Reason) {
		o.logDecision(ctx, slog.LevelInfo, "deny", req, line{d.Policy, d.Rule, d.Reason, d.Status, d.Subject, d.Limit})
	}
	if dr := &d.DryRun; dr.WouldDeny() {
		if o.s.log.Enabled(ctx, slog.LevelInfo) && o.s.dryRunLog.Allow(dr.Reason) {
			o.logDecision(ctx, slog.LevelInfo, "dry-run deny", req, line{dr.Policy, dr.Rule, dr.Reason, dr.Status, dr.Subject, dr.Limit})
		}
	} else if dr.Evaluated() && o.s.log.Enabled(ctx, slog.LevelDebug) {
		o.logDecision(ctx, slog.LevelDebug, "dry-run allow", req, line{dr.Policy, dr.Rule, dr.Reason, dr.Status, dr.Subject, dr.Limit})
	}
}

// A line is what a decision log line says of the decision.
type line struct {
	policy, rule, reason string
	status               int
	sub                  string
	limit                *policy.Limit
}

// maxRequestIDLen bounds the request id logged: it comes from the client
// when no proxy sets it.
const maxRequestIDLen = 128

// requestID returns the id of req: the proxy's (Envoy's request.http.id),
// else the x-request-id header; at most maxRequestIDLen bytes; a new one
// when neither is there, so that every decision line has one.
func requestID(req *decision.Request) string {
	id := req.ID
	if id == "" {
		id = req.Headers["x-request-id"]
	}
	return clipID(id)
}

// clipID bounds id to maxRequestIDLen bytes, or makes one up when it is
// empty: "tg-" and 16 random base32 characters.
func clipID(id string) string {
	if id == "" {
		return "tg-" + rand.Text()[:16]
	}
	if len(id) > maxRequestIDLen {
		return id[:maxRequestIDLen]
	}
	return id
}

// logDecision is kept out of Decide so that its large frame is only paid
// when something is logged.
func (o observed) logDecision(ctx context.Context, level slog.Level, msg string, req *decision.Request, l line) {
	path, _, _ := strings.Cut(req.Path, "?")
	path, _, _ = strings.Cut(path, "#")
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs, slog.String("transport", o.transport))
	attrs = append(attrs, slog.String("request_id", requestID(req)))
	attrs = append(attrs, slog.String("policy", l.policy), slog.String("rule", l.rule), slog.String("reason", l.reason),
		slog.Int("status", l.status), slog.String("sub", l.sub))
	if l.limit != nil {
		attrs = append(attrs, slog.String("limit", l.limit.Name), slog.String("limit_by", l.limit.By.String()))
	}
	attrs = append(attrs, slog.String("method", req.Method), slog.String("host", req.Host), slog.String("path", path),
		slog.String("source", req.SourceIP))
	o.s.log.LogAttrs(ctx, level, msg, attrs...)
}

// reportSuppressedEvery reports suppressed deny lines every interval until
// ctx ends, and once more then.
func (s *Server) reportSuppressedEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.reportSuppressed()
			return
		case <-t.C:
			s.reportSuppressed()
		}
	}
}

// reportSuppressed logs, per reason, how many deny lines were held back
// since the last report, and per message how many quota store lines.
func (s *Server) reportSuppressed() {
	for _, l := range []struct {
		mode    string
		limiter *logging.Limiter
	}{{"enforce", s.denyLog}, {"dryRun", s.dryRunLog}} {
		l.limiter.Suppressed(func(reason string, n int64) {
			s.log.Info("deny lines suppressed", "mode", l.mode, "reason", reason, "suppressed", n)
		})
	}
	s.storeLog.Suppressed(func(msg string, n int64) {
		s.log.Warn("quota store lines suppressed", "message", msg, "suppressed", n)
	})
}

func (s *Server) httpAuthHandler() http.Handler {
	o := observed{s: s, transport: "http"}
	return httpauth.NewHandler(o, httpauth.Options{
		Mode: s.opts.ForwardAuth,
		// A request whose forwarding headers are rejected reaches no
		// decision; count and log it as one.
		OnReject: func(r *http.Request, d *decision.Decision) {
			s.metrics.Decision(o.transport, d, 0)
			if !s.log.Enabled(r.Context(), slog.LevelInfo) || !s.denyLog.Allow(d.Reason) {
				return
			}
			s.log.Info("deny", "transport", o.transport, "request_id", clipID(r.Header.Get("X-Request-Id")),
				"policy", "", "rule", "", "reason", d.Reason, "status", d.Status, "message", d.Message, "forwardAuth", s.opts.ForwardAuth.String(), "sub", "", "source", r.RemoteAddr)
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
// list served; unready again from the start of a shutdown). A quota store outage shows in the /readyz body, never in
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
		draining := s.draining.Load()
		ready := s.ready.Load() && !draining
		store, storeErr := "up", ""
		if !s.quota.Up() {
			store = "down"
			if err := s.quota.Err(); err != nil {
				storeErr = err.Error()
			}
		}
		body := struct {
			Ready    bool `json:"ready"`
			Draining bool `json:"draining,omitempty"`
			Policies int  `json:"policies"`
			// PolicySource is files, kubernetes, files+kubernetes or
			// none; Warning says what none means.
			PolicySource string `json:"policySource"`
			Warning      string `json:"warning,omitempty"`
			// QuotaStore is up or down (pinged twice a second, from the
			// start: down until the store first answers);
			// QuotaStoreError is its last error while it is down.
			QuotaStore      string      `json:"quotaStore"`
			QuotaStoreError string      `json:"quotaStoreError,omitempty"`
			Kubernetes      *kubeHealth `json:"kubernetes,omitempty"`
		}{Ready: ready, Draining: draining, Policies: s.engine.Snapshot().Len(), PolicySource: s.policySource(),
			QuotaStore: store, QuotaStoreError: storeErr, Kubernetes: s.kubeHealth()}
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
