package decision

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// Rate-limit response headers.
const (
	HeaderLimit      = "x-ratelimit-limit"
	HeaderRemaining  = "x-ratelimit-remaining"
	HeaderReset      = "x-ratelimit-reset"
	HeaderRetryAfter = "retry-after"
)

// missingKey stands for an absent claim or header in a counter key: every
// request without it shares one counter rather than escaping the limit.
const missingKey = "\x00"

// storeDegradedHeaders go with a denial when the quota store cannot answer.
var storeDegradedHeaders = []Header{{Name: HeaderRetryAfter, Value: "1"}}

// charge counts the request against every limit of the policy and rule and
// returns the rate-limit headers, and the denial template when a limit (or
// the store) denies.
func (e *Engine) charge(ctx context.Context, ev *evaluation) ([]Header, *Decision) {
	if e.opts.Quota == nil {
		return nil, nil
	}
	var buf [8]ratelimit.Limit
	limits := buf[:0]
	add := func(l *policy.Limit) {
		key, ok := e.counterKey(l, ev)
		if !ok {
			return
		}
		tier, hasTier := "", false
		if l.Tiers != nil && ev.identity != nil {
			tier, hasTier = ev.identity.ClaimString(l.Tiers.Claim)
		}
		n, period := l.For(tier, hasTier)
		limits = append(limits, ratelimit.Limit{Key: key, Requests: n, Period: period})
	}
	p := ev.entry.policy
	for i := range p.Limits {
		add(&p.Limits[i])
	}
	for i := range ev.rule.Limits {
		add(&ev.rule.Limits[i])
	}
	if len(limits) == 0 {
		ev.step("quota", "skip", "no limits apply")
		return nil, nil
	}
	res, err := e.opts.Quota.Take(ctx, limits)
	if err != nil || (!res.Allowed && len(res.Statuses) == 0) {
		ev.step("quota", "deny", "quota store unavailable")
		return storeDegradedHeaders, &deniedStoreDegraded
	}
	headers := rateLimitHeaders(res)
	if !res.Allowed {
		ev.step("quota", "deny", "limit exceeded")
		return headers, &deniedRateLimited
	}
	if ev.req.Explain {
		ev.step("quota", "ok", strconv.Itoa(len(limits)), " limit(s) charged")
	}
	return headers, nil
}

// counterKey builds the counter identity of a limit for this request; ok is
// false when the limit does not apply (a token-keyed limit on an anonymous
// rule).
func (e *Engine) counterKey(l *policy.Limit, ev *evaluation) (string, bool) {
	id := ev.identity
	switch l.By {
	case policy.ByUser:
		if id == nil {
			return "", false
		}
		return l.CounterPrefix + id.Issuer + "|" + id.Subject, true
	case policy.ByIP:
		return l.CounterPrefix + e.clientIP(ev.req), true
	case policy.ByUserIP:
		if id == nil {
			return "", false
		}
		return l.CounterPrefix + id.Issuer + "|" + id.Subject + "|" + e.clientIP(ev.req), true
	case policy.ByClaim:
		if id == nil {
			return "", false
		}
		v, ok := id.ClaimString(l.ByName)
		if !ok {
			v = missingKey
		}
		return l.CounterPrefix + v, true
	case policy.ByHeader:
		v, ok := ev.req.Headers[l.ByName]
		if !ok {
			v = missingKey
		}
		return l.CounterPrefix + v, true
	}
	return "", false
}

// clientIP is the source address, or the X-Forwarded-For entry added by the
// outermost trusted proxy when TrustedHops is set.
func (e *Engine) clientIP(req *Request) string {
	if e.opts.TrustedHops <= 0 {
		return req.SourceIP
	}
	xff := req.Headers["x-forwarded-for"]
	if xff == "" {
		return req.SourceIP
	}
	hop := 0
	for xff != "" {
		i := strings.LastIndexByte(xff, ',')
		entry := strings.TrimSpace(xff[i+1:])
		hop++
		if hop == e.opts.TrustedHops || i < 0 {
			if entry == "" {
				return req.SourceIP
			}
			return entry
		}
		xff = xff[:i]
	}
	return req.SourceIP
}

// rateLimitHeaders describes the tightest limit: the denying one with the
// longest wait, or else the one with the fewest requests remaining.
func rateLimitHeaders(res ratelimit.Result) []Header {
	if len(res.Statuses) == 0 {
		return nil
	}
	best := 0
	for i, s := range res.Statuses[1:] {
		b := res.Statuses[best]
		switch {
		case !res.Allowed:
			if !s.Allowed && (b.Allowed || s.RetryAfter > b.RetryAfter) {
				best = i + 1
			}
		case s.Remaining < b.Remaining || (s.Remaining == b.Remaining && s.Limit < b.Limit):
			best = i + 1
		}
	}
	s := res.Statuses[best]
	n := 3
	if !res.Allowed {
		n = 4
	}
	h := make([]Header, 0, n)
	h = append(h,
		Header{Name: HeaderLimit, Value: strconv.FormatInt(s.Limit, 10)},
		Header{Name: HeaderRemaining, Value: strconv.FormatInt(s.Remaining, 10)},
		Header{Name: HeaderReset, Value: strconv.FormatInt(ceilSeconds(s.Reset), 10)},
	)
	if !res.Allowed {
		retry := ceilSeconds(s.RetryAfter)
		if retry < 1 {
			retry = 1
		}
		h = append(h, Header{Name: HeaderRetryAfter, Value: strconv.FormatInt(retry, 10)})
	}
	return h
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
