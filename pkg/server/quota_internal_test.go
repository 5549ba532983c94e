package server

import (
	"log/slog"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/metrics"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// TestStoreBudget checks that serve's Redis store keeps SPEC's bound: a
// check waits at most 100 ms on Redis (ratelimit.MaxBudget), which
// TestResilientWaitsAtMostItsBudget proves a Resilient store honours.
func TestStoreBudget(t *testing.T) {
	tests := map[string]struct {
		budget, want time.Duration
	}{
		"serve's default keeps 25 ms for the rest of the check": {want: 75 * time.Millisecond},
		"a test may raise it": {budget: time.Minute, want: time.Minute},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			// Nothing listens on port 1; the store never needs to connect.
			store, err := newQuotaStore(Options{
				QuotaStore: "redis", Redis: ratelimit.ClientOptions{Addr: "127.0.0.1:1"}, OnStoreError: "deny", StoreBudget: tt.budget,
			}, metrics.New(), slog.New(slog.DiscardHandler), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			got := store.(*redisStore).Budget()
			if got != tt.want {
				t.Fatalf("budget %s, want %s", got, tt.want)
			}
			if tt.budget == 0 && got > ratelimit.MaxBudget {
				t.Fatalf("serve's budget %s exceeds %s", got, ratelimit.MaxBudget)
			}
		})
	}
}
