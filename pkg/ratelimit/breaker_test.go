package ratelimit

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	// Each op is applied in turn: "allow" (must be admitted), "reject" (must
	// not be), "fail", "ok", "release", or "wait" (advance the clock by the
	// cooldown). want is the state after the last op.
	tests := map[string]struct {
		ops  []string
		want BreakerState
	}{
		"a new breaker is closed":                           {nil, BreakerClosed},
		"fewer failures than the threshold keep it closed":  {[]string{"allow", "fail", "allow", "fail", "allow"}, BreakerClosed},
		"a success resets the count of failures":            {[]string{"fail", "fail", "ok", "fail", "fail", "allow"}, BreakerClosed},
		"threshold consecutive failures open it":            {[]string{"fail", "fail", "fail", "reject"}, BreakerOpen},
		"it stays open until the cooldown is over":          {[]string{"fail", "fail", "fail", "reject", "reject"}, BreakerOpen},
		"after the cooldown exactly one probe goes through": {[]string{"fail", "fail", "fail", "wait", "allow", "reject", "reject"}, BreakerHalfOpen},
		"a successful probe closes it":                      {[]string{"fail", "fail", "fail", "wait", "allow", "ok", "allow", "allow"}, BreakerClosed},
		"a failed probe opens it again for a cooldown":      {[]string{"fail", "fail", "fail", "wait", "allow", "fail", "reject"}, BreakerOpen},
		"a released probe lets the next request probe":      {[]string{"fail", "fail", "fail", "wait", "allow", "release", "allow", "reject"}, BreakerHalfOpen},
		"one failure after reopening does not wait twice":   {[]string{"fail", "fail", "fail", "wait", "allow", "fail", "wait", "allow", "ok"}, BreakerClosed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock()
			b := &breaker{threshold: 3, cooldown: time.Second, now: clock.Now}
			for i, op := range tt.ops {
				switch op {
				case "allow", "reject":
					if ok, _ := b.allow(); ok != (op == "allow") {
						t.Fatalf("op %d: allow() = %v in state %v, want %v", i, ok, b.State(), op == "allow")
					}
				case "fail":
					b.failure()
				case "ok":
					b.success()
				case "release":
					b.release()
				case "wait":
					clock.Advance(time.Second)
				}
			}
			if got := b.State(); got != tt.want {
				t.Fatalf("state %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBreakerTransitions(t *testing.T) {
	clock := newFakeClock()
	b := &breaker{threshold: 1, cooldown: time.Second, now: clock.Now}
	if got := b.failure(); got != (transition{BreakerClosed, BreakerOpen}) {
		t.Fatalf("failure: %+v, want closed → open", got)
	}
	clock.Advance(time.Second)
	if _, got := b.allow(); got != (transition{BreakerOpen, BreakerHalfOpen}) {
		t.Fatalf("allow after cooldown: %+v, want open → half-open", got)
	}
	if got := b.success(); got != (transition{BreakerHalfOpen, BreakerClosed}) {
		t.Fatalf("success: %+v, want half-open → closed", got)
	}
	if got := b.success(); got.changed() {
		t.Fatalf("success when closed: %+v, want no change", got)
	}
}
