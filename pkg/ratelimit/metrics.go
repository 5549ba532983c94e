package ratelimit

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the quota store's Prometheus metrics.
type metrics struct {
	up      prometheus.Gauge
	latency prometheus.Histogram
	errors  prometheus.Counter
	breaker prometheus.Gauge
}

func newUpGauge() prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tollgate_quota_store_up",
		Help: "1 when the shared quota store answers (it has answered since the start and its circuit breaker is closed), 0 while decisions follow --on-store-error; the server pings the store twice a second.",
	})
}

// RegisterUp registers the quota store metrics of a store that cannot go
// down (Memory) on reg: tollgate_quota_store_up set to 1, and the
// latency, errors and breaker metrics at zero (a memory store's calls are
// not timed: they take well under a microsecond), so that dashboards,
// alerts and scrapes find the same names whatever the store. Resilient
// registers its own.
func RegisterUp(reg prometheus.Registerer) error {
	m, err := newMetrics(reg)
	if err != nil {
		return err
	}
	m.up.Set(1)
	return nil
}

// newMetrics creates the metrics and registers them on reg, unless reg is
// nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: newUpGauge(),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tollgate_quota_store_latency_seconds",
			Help:    "Time of one call to the shared quota store, including failed calls.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25},
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tollgate_quota_store_errors_total",
			Help: "Calls to the shared quota store that failed or exceeded the decision budget.",
		}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tollgate_quota_store_breaker_state",
			Help: "Circuit breaker of the shared quota store: 0 closed, 1 half-open, 2 open.",
		}),
	}
	// m.up stays 0 until the store first answers (Resilient.succeeded).
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.up, m.latency, m.errors, m.breaker} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ratelimit: register quota store metrics: %w", err)
		}
	}
	return m, nil
}
