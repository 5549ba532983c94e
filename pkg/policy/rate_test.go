package policy_test

import (
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/policy"
)

func TestNewRateTexts(t *testing.T) {
	tests := map[string]struct {
		name                 string
		requests, burst      int64
		period               time.Duration
		limit, item, summary string
		explain              string
	}{
		"the issue's example": {
			name: "per-user", requests: 100, burst: 100, period: 15 * time.Minute,
			limit: "100", item: `"per-user";q=100;w=900`, summary: "100 requests per 15m, burst 100",
			explain: "at most 100 at once, then one every 9s, so up to 200 in the first 15m",
		},
		"a smaller burst, one request per period": {
			name: "daily", requests: 1, burst: 1, period: 24 * time.Hour,
			limit: "1", item: `"daily";q=1;w=86400`, summary: "1 request per 24h, burst 1",
			explain: "at most 1 at once, then one every 24h, so up to 2 in the first 24h",
		},
		"a period of whole hours and minutes": {
			name: "l", requests: 7, burst: 3, period: 90 * time.Minute,
			limit: "7", item: `"l";q=7;w=5400`, summary: "7 requests per 1h30m, burst 3",
			explain: "at most 3 at once, then one every 12m51.429s, so up to 10 in the first 1h30m",
		},
		"a fractional period rounds w up": {
			name: "fast", requests: 3, burst: 30, period: 1500 * time.Millisecond,
			limit: "3", item: `"fast";q=3;w=2`, summary: "3 requests per 1.5s, burst 30",
			explain: "at most 30 at once, then one every 500ms, so up to 33 in the first 1.5s",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := policy.NewRate(tc.name, tc.requests, tc.burst, tc.period)
			if r.LimitText != tc.limit || r.PolicyText != tc.item || r.Summary != tc.summary || r.Explain() != tc.explain {
				t.Errorf("texts %q %q %q %q,\nwant  %q %q %q %q", r.LimitText, r.PolicyText, r.Summary, r.Explain(), tc.limit, tc.item, tc.summary, tc.explain)
			}
		})
	}
}

func TestAppendSFString(t *testing.T) {
	for in, want := range map[string]string{
		"per-user":  `"per-user"`,
		`a"b\c`:     `"a\"b\\c"`,
		"tab\there": `"tab?here"`,
		"é":         `"??"`,
	} {
		if got := string(policy.AppendSFString(nil, in)); got != want {
			t.Errorf("AppendSFString(%q) = %s, want %s", in, got, want)
		}
	}
}
