package decision_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/testclock"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

func burst(n int64) *int64 { return &n }

// TestDecideRateLimitAnswer: a limit allows its burst at once; allowed
// answers and the 429 carry the tightest limit's X-RateLimit-* and IETF
// RateLimit-Policy / RateLimit headers, and the 429's message names the
// limit, its rate and when the next request is allowed.
func TestDecideRateLimitAnswer(t *testing.T) {
	premium := &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 1000, Burst: burst(5), Period: "1h"}}}
	tests := map[string]struct {
		limit  v1alpha1.Limit
		claims map[string]any
		burst  int
		// first are the response headers of the first request, last
		// those of the first denied one.
		first, last map[string]string
		message     string
	}{
		"burst unset: requests at once": {
			limit: v1alpha1.Limit{Requests: 100, Period: "15m"},
			burst: 100,
			first: map[string]string{"x-ratelimit-limit": "100", "x-ratelimit-remaining": "99", "x-ratelimit-reset": "9",
				"ratelimit-policy": `"per-user";q=100;w=900`, "ratelimit": `"per-user";r=99;t=9`},
			last: map[string]string{"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "900", "retry-after": "9",
				"ratelimit-policy": `"per-user";q=100;w=900`, "ratelimit": `"per-user";r=0;t=900`},
			message: `rate limit "per-user" exceeded: 100 requests per 15m, burst 100; next request allowed in 9s`,
		},
		"a burst smaller than requests": {
			limit: v1alpha1.Limit{Requests: 100, Burst: burst(10), Period: "15m"},
			burst: 10,
			first: map[string]string{"x-ratelimit-limit": "100", "x-ratelimit-remaining": "9", "x-ratelimit-reset": "9",
				"ratelimit-policy": `"per-user";q=100;w=900`, "ratelimit": `"per-user";r=9;t=9`},
			last: map[string]string{"x-ratelimit-limit": "100", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "90", "retry-after": "9",
				"ratelimit-policy": `"per-user";q=100;w=900`, "ratelimit": `"per-user";r=0;t=90`},
			message: `rate limit "per-user" exceeded: 100 requests per 15m, burst 10; next request allowed in 9s`,
		},
		"a tier's own burst and period": {
			limit:  v1alpha1.Limit{Requests: 100, Period: "15m", Tiers: premium},
			claims: map[string]any{"plan": "premium"},
			burst:  5,
			first: map[string]string{"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "4", "x-ratelimit-reset": "4",
				"ratelimit-policy": `"per-user";q=1000;w=3600`, "ratelimit": `"per-user";r=4;t=4`},
			last: map[string]string{"x-ratelimit-limit": "1000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "18", "retry-after": "4",
				"ratelimit-policy": `"per-user";q=1000;w=3600`, "ratelimit": `"per-user";r=0;t=18`},
			message: `rate limit "per-user" exceeded: 1000 requests per 1h, burst 5; next request allowed in 4s`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clock := testclock.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
			store := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now, SweepInterval: -1})
			f := newFixture(t, decision.Options{Quota: store})
			tc.limit.Name, tc.limit.By = "per-user", "user"
			rule := v1alpha1.Rule{Name: "limited", Path: "/api/limited", Limits: []v1alpha1.Limit{tc.limit}}
			f.load(t, unlimitedPolicy(f.key, pt.WithRule(rule),
				// A looser policy-level limit: the tightest decides.
				pt.WithLimit(v1alpha1.Limit{Name: "per-ip", Requests: 10_000, Period: "1h", By: "ip"})))
			req := request("GET", "/api/limited", f.token(t, "alice", tc.claims))
			var d decision.Decision
			for i := range tc.burst {
				if f.engine.DecideInto(context.Background(), req, &d); !d.Allowed {
					t.Fatalf("request %d of the burst of %d: %d %s", i+1, tc.burst, d.Status, d.Message)
				}
				if i == 0 {
					wantHeaders(t, "first answer", d.ResponseHeaders, tc.first)
				}
			}
			f.engine.DecideInto(context.Background(), req, &d)
			if d.Status != 429 || d.Reason != decision.ReasonRateLimited {
				t.Fatalf("request %d: %d %s, want 429", tc.burst+1, d.Status, d.Reason)
			}
			wantHeaders(t, "429", d.ResponseHeaders, tc.last)
			if d.Message != tc.message {
				t.Errorf("message %q, want %q", d.Message, tc.message)
			}
			var body struct{ Error, Message string }
			if err := json.Unmarshal([]byte(d.Body()), &body); err != nil || body.Error != "rate_limited" || body.Message != tc.message ||
				!strings.HasPrefix(d.Body(), `{"error":"rate_limited","message":"rate limit \"per-user\" exceeded: `) {
				t.Errorf("body %s (%v), want {\"error\":\"rate_limited\",\"message\":%q}", d.Body(), err, tc.message)
			}
		})
	}
}

// wantHeaders checks that hs are exactly want.
func wantHeaders(t *testing.T, what string, hs []decision.Header, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, h := range hs {
		got[h.Name] = h.Value
	}
	if len(got) != len(hs) || len(got) != len(want) {
		t.Errorf("%s: headers %v, want %v", what, hs, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s: %s = %q, want %q", what, name, got[name], v)
		}
	}
}

// TestDecideExplainsTheQuota: tollgate check's explanation says what each
// limit allows in plain words, and where its counter stands.
func TestDecideExplainsTheQuota(t *testing.T) {
	f := newFixture(t, decision.Options{})
	rule := v1alpha1.Rule{Name: "limited", Path: "/api/limited",
		Limits: []v1alpha1.Limit{{Name: "per-user", Requests: 100, Burst: burst(10), Period: "15m", By: "user"}}}
	f.load(t, unlimitedPolicy(f.key, pt.WithRule(rule), pt.WithLimit(v1alpha1.Limit{Name: "per-client", Requests: 1, Period: "1h", By: "header:x-client"})))
	req := request("GET", "/api/limited", f.token(t, "alice", nil), "x-client", "app")
	req.Explain = true
	want := [][]string{{
		"quota ok per-client (by header:x-client): 1 request per 1h, burst 1: at most 1 at once, then one every 1h, so up to 2 in the first 1h; charged, 0 left, full again in 1h",
		"quota ok per-user (by user): 100 requests per 15m, burst 10: at most 10 at once, then one every 9s, so up to 110 in the first 15m; charged, 9 left, full again in 9s",
	}, {
		"quota deny per-client (by header:x-client): 1 request per 1h, burst 1: at most 1 at once, then one every 1h, so up to 2 in the first 1h; 0 left, next request allowed in 1h",
		"quota ok per-user (by user): 100 requests per 15m, burst 10: at most 10 at once, then one every 9s, so up to 110 in the first 15m; not charged (another limit denies), 9 left",
	}}
	for i, w := range want {
		d := f.engine.Decide(context.Background(), req)
		var got []string
		for _, s := range d.Steps {
			if s.Name == "quota" {
				got = append(got, s.Name+" "+s.Outcome+" "+s.Detail)
			}
		}
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("request %d: quota steps\n%s\nwant\n%s", i+1, strings.Join(got, "\n"), strings.Join(w, "\n"))
		}
	}
}

// TestDecideChargesWithoutAllocating: an allowed decision with two limits
// on the memory store (counters that exist), a cached token, an owner check
// and identity headers allocates nothing, its rate-limit headers included.
func TestDecideChargesWithoutAllocating(t *testing.T) {
	f := newFixture(t, decision.Options{})
	own := pt.OwnTasksRule()
	own.Limits = []v1alpha1.Limit{{Name: "per-user", Requests: 1_000_000_000, Burst: burst(500_000_000), Period: "1h", By: "user"}}
	f.load(t, pt.New(pt.WithPathPrefix("/api"),
		pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = f.key.JWKS(); j.ForwardClaims = map[string]string{"x-user-id": "sub"} }),
		pt.WithLimit(v1alpha1.Limit{Name: "per-ip", Requests: 1_000_000_000, Period: "1h", By: "ip"}),
		pt.WithRule(own)))
	req := request("GET", "/api/users/alice/tasks/42", f.token(t, "alice", nil))
	var d decision.Decision
	f.engine.DecideInto(context.Background(), req, &d) // warm the token cache, create the counters
	if n := testing.AllocsPerRun(100, func() {
		if f.engine.DecideInto(context.Background(), req, &d); !d.Allowed || len(d.ResponseHeaders) != 5 {
			t.Fatalf("%d %s, headers %v", d.Status, d.Reason, d.ResponseHeaders)
		}
	}); n != 0 {
		t.Errorf("an allowed decision with two limits: %v allocations, want 0", n)
	}
}

// TestDecideIntoHeaderValuesBelongToTheDecision: the rate-limit header
// values of a Decision stay as they were while other Decisions are
// filled; only reusing that Decision changes them.
func TestDecideIntoHeaderValuesBelongToTheDecision(t *testing.T) {
	f := newFixture(t, decision.Options{})
	req := request("GET", "/api/users/alice/tasks", f.token(t, "alice", nil))
	var first, second decision.Decision
	f.engine.DecideInto(context.Background(), req, &first)
	want := map[string]string{}
	for _, h := range first.ResponseHeaders {
		want[h.Name] = strings.Clone(h.Value)
	}
	if want["ratelimit"] != `"per-user";r=2;t=300` {
		t.Fatalf("first decision: headers %v", first.ResponseHeaders)
	}
	for range 3 { // the third is a 429, with Retry-After
		f.engine.DecideInto(context.Background(), req, &second)
	}
	if second.Status != 429 {
		t.Fatalf("fourth decision: %d, want 429", second.Status)
	}
	wantHeaders(t, "the first decision after three more", first.ResponseHeaders, want)
}
