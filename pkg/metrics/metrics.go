// Package metrics holds tollgate's Prometheus metrics (prefix tollgate_) on
// a registry of its own, and implements the observer hooks of the packages
// that report to it.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tollgate-dev/tollgate/internal/cowmap"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/version"
)

// Metrics records what tollgate decides and how it is doing.
type Metrics struct {
	// Registry holds every tollgate metric plus the Go and process
	// collectors; serve it on /metrics.
	Registry *prometheus.Registry

	// vecs hold tollgate_decisions_total and
	// tollgate_ratelimit_denials_total; series holds their series of each
	// served policy, by key, and unmatched those of checks no policy
	// governed (cache.go).
	vecs         policyVecs
	series       cowmap.Map[string, *policySeries]
	unmatched    *policySeries
	checkLatency *prometheus.HistogramVec
	// latencyBy holds checkLatency resolved per transport.
	latencyBy      map[string]prometheus.Observer
	jwtFailures    *prometheus.CounterVec
	jwtByReason    map[string]prometheus.Counter // jwtFailures curried per jwt.Reason
	jwksFetches    *prometheus.CounterVec
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	policiesLoaded prometheus.Gauge
	policiesReady  prometheus.Gauge
	checksRefused  *prometheus.CounterVec
	connsRefused   *prometheus.CounterVec
}

var _ jwt.Observer = (*Metrics)(nil)

// New returns Metrics registered on a new registry.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		checkLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tollgate_check_duration_seconds",
			Help:    "Time to decide one check, by transport (grpc, http).",
			Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"transport"}),
		jwtFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_jwt_verification_failures_total",
			Help: "Tokens rejected, by reason.",
		}, []string{"reason"}),
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tollgate_jwks_fetches_total",
			Help: "JWKS (and discovery document) fetches by URI and result (success, error); errors are result=\"error\".",
		}, []string{"uri", "result"}),
		policiesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_policies_loaded",
			Help: "Policies in the serving snapshot.",
		}),
		policiesReady: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_policies_ready",
			Help: "1 once a policy set has been loaded and is serving.",
		}),
	}
	m.checksRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_checks_refused_total",
		Help: "Checks refused undecided because too many were in flight (gRPC RESOURCE_EXHAUSTED, HTTP 503), by transport.",
	}, []string{"transport"})
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_connections_refused_total",
		Help: "Connections closed by a listener's connection limit, by listener and reason (evicted: a connection that had sent nothing, to make room; refused: the new one).",
	}, []string{"listener", "reason"})
	tokenCache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_token_cache_lookups_total",
		Help: "Verified-token cache lookups by result (hit, miss).",
	}, []string{"result"})
	m.cacheHits, m.cacheMisses = tokenCache.WithLabelValues("hit"), tokenCache.WithLabelValues("miss")
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_decisions_total",
		Help: "Authorization decisions by mode (enforce: the answer; dryRun: the would-be decision of a dryRun policy evaluated beside it), policy, rule, result (allow, deny) and reason.",
	}, []string{"mode", "policy", "rule", "result", "reason"})
	rlDenials := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tollgate_ratelimit_denials_total",
		Help: "Requests denied 429 by a limit, by policy and limit name (the limit with the longest wait when several deny).",
	}, []string{"policy", "limit"})
	m.vecs = policyVecs{decisions: decisions, denials: rlDenials,
		discard: prometheus.NewCounter(prometheus.CounterOpts{Name: "discarded", Help: "Never registered."})}
	m.unmatched = &policySeries{vecs: &m.vecs}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tollgate_build_info",
		Help: "Always 1; the labels describe the running binary.",
	}, []string{"version", "commit", "goversion"})
	b := version.Get()
	build.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	m.latencyBy = map[string]prometheus.Observer{
		"grpc": m.checkLatency.WithLabelValues("grpc"),
		"http": m.checkLatency.WithLabelValues("http"),
	}
	reg.MustRegister(decisions, m.checkLatency, m.jwtFailures, m.jwksFetches,
		tokenCache, m.policiesLoaded, m.policiesReady, rlDenials, build, m.checksRefused, m.connsRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.jwtByReason = make(map[string]prometheus.Counter, len(jwt.Reasons()))
	for _, r := range jwt.Reasons() {
		m.jwtByReason[string(r)] = m.jwtFailures.WithLabelValues(string(r))
	}
	return m
}

// Decision records one decision and its latency, and the limit of a 429
// (a dryRun policy's would-be 429s count in tollgate_decisions_total
// only). It is the one place that
// counts token failures too: a decision whose reason is a jwt.Reason (a
// missing token included, which never reaches a verifier) is one rejected
// token, so tollgate_jwt_verification_failures_total agrees with
// tollgate_decisions_total by reason (summed over modes).
func (m *Metrics) Decision(transport string, d *decision.Decision, took time.Duration) {
	if s := m.seriesOf(d.Policy); s != nil {
		m.decide(s, modeEnforce, d.Rule, d.Allowed, d.Reason)
		if d.Limit != nil {
			s.denial(d.Limit.Name).Inc()
		}
	}
	if dr := &d.DryRun; dr.Evaluated() {
		if s := m.seriesOf(dr.Policy); s != nil {
			m.decide(s, modeDryRun, dr.Rule, !dr.WouldDeny(), dr.Reason)
		}
	}
	latency, ok := m.latencyBy[transport]
	if !ok {
		latency = m.checkLatency.WithLabelValues(transport)
	}
	latency.Observe(took.Seconds())
}

func (m *Metrics) decide(s *policySeries, mode, rule string, allowed bool, reason string) {
	result := "allow"
	if !allowed {
		result = "deny"
		if c, ok := m.jwtByReason[reason]; ok {
			c.Inc()
		}
	}
	s.decision(decisionLabels{mode, rule, result, reason}).Inc()
}

// JWKSFetch implements jwt.Observer.
func (m *Metrics) JWKSFetch(uri string, err error) {
	if err != nil {
		m.jwksFetches.WithLabelValues(uri, "error").Inc()
		return
	}
	m.jwksFetches.WithLabelValues(uri, "success").Inc()
}

// CacheLookup implements jwt.Observer.
func (m *Metrics) CacheLookup(hit bool) {
	if hit {
		m.cacheHits.Inc()
		return
	}
	m.cacheMisses.Inc()
}

// InFlight exposes the checks in flight, as inflight reports them, as
// tollgate_checks_in_flight.
func (m *Metrics) InFlight(inflight func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tollgate_checks_in_flight",
		Help: "Checks being decided, gRPC and HTTP together (bounded by --max-inflight-checks).",
	}, inflight))
}

// CheckRefused counts a check refused because too many were in flight.
func (m *Metrics) CheckRefused(transport string) {
	m.checksRefused.WithLabelValues(transport).Inc()
}

// OpenConnections exposes a listener's open connections, as open reports
// them, as tollgate_connections_open{listener}.
func (m *Metrics) OpenConnections(listener string, open func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "tollgate_connections_open",
		Help:        "Open connections by listener (bounded by --max-connections for grpc and http).",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, open))
}

// ConnectionRefused counts a connection closed by a listener's limit.
func (m *Metrics) ConnectionRefused(listener, reason string) {
	m.connsRefused.WithLabelValues(listener, reason).Inc()
}
