package decision

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/quota"
)

// Rate-limit response headers. The X-RateLimit-* trio is the de facto
// convention; RateLimit-Policy and RateLimit are the fields of
// draft-ietf-httpapi-ratelimit-headers-11 (sections 3 and 4), each one
// structured-field List member for the tightest limit:
//
//	RateLimit-Policy: "per-user";q=100;w=900
//	RateLimit: "per-user";r=99;t=9
//
// q is the limit's requests and w its period in seconds; r is what is
// left of the burst and t the seconds until the counter is full again
// (as X-RateLimit-Reset).
const (
	HeaderLimit           = "x-ratelimit-limit"
	HeaderRemaining       = "x-ratelimit-remaining"
	HeaderReset           = "x-ratelimit-reset"
	HeaderRetryAfter      = "retry-after"
	HeaderRateLimitPolicy = "ratelimit-policy"
	HeaderRateLimit       = "ratelimit"
)

// storeDegradedHeaders go with a denial when the quota store cannot answer.
var storeDegradedHeaders = []Header{{Name: HeaderRetryAfter, Value: "1"}}

// quotaScratch holds the limits of one decision, their keys and their
// Statuses while the store counts them. Every key of a decision is built
// into one buffer, which the limits' keys slice; the store borrows them
// and the Statuses buffer for the Take only (quota.Store), so that a
// decision charges its limits without allocating.
type quotaScratch struct {
	limits   []quota.Limit
	src      []*policy.Limit // the compiled limit of each of limits
	rates    []*policy.Rate  // the rate (tier) that applies to each of limits
	ends     []int           // end of each limit's key in keys
	keys     []byte
	statuses []quota.Status
}

// scratchPool recycles quotaScratch values across decisions.
var scratchPool = sync.Pool{New: func() any {
	return &quotaScratch{limits: make([]quota.Limit, 0, 8), src: make([]*policy.Limit, 0, 8), rates: make([]*policy.Rate, 0, 8),
		ends: make([]int, 0, 8), keys: make([]byte, 0, 512), statuses: make([]quota.Status, 0, 8)}
}}

// charge counts the request against every limit of the policy and rule and
// returns the rate-limit headers, in buf, and the denial template when a
// limit (or the store) denies; a limit that denies is left in ev.limit.
func (e *Engine) charge(ctx context.Context, ev *evaluation, buf *decisionBuf) ([]Header, *Decision) {
	if e.opts.Quota == nil {
		return nil, nil
	}
	s := scratchPool.Get().(*quotaScratch)
	defer func() {
		clear(s.limits)
		clear(s.src)
		clear(s.rates)
		s.limits, s.src, s.rates, s.ends, s.keys = s.limits[:0], s.src[:0], s.rates[:0], s.ends[:0], s.keys[:0]
		scratchPool.Put(s)
	}()
	in := keyInputs{headers: ev.req.Headers}
	if id := ev.identity; id != nil {
		in.claims, in.issuer, in.subject = id, id.Issuer, id.Subject
	}
	add := func(l *policy.Limit) {
		if l.By == policy.ByIP || l.By == policy.ByUserIP {
			in.ip = e.clientIP(ev.req)
		}
		keys, ok := appendCounterKey(s.keys, l, &in)
		if !ok {
			return
		}
		s.keys = keys
		tier, hasTier := "", false
		if l.Tiers != nil && ev.identity != nil {
			tier, hasTier = ev.identity.ClaimString(l.Tiers.Claim)
		}
		r := l.For(tier, hasTier)
		s.limits = append(s.limits, quota.Limit{Requests: r.Requests, Burst: r.Burst, Period: r.Period})
		s.src = append(s.src, l)
		s.rates = append(s.rates, r)
		s.ends = append(s.ends, len(s.keys))
	}
	p := ev.entry.policy
	for i := range p.Limits {
		add(&p.Limits[i])
	}
	for i := range ev.rule.Limits {
		add(&ev.rule.Limits[i])
	}
	limits := s.limits
	if len(limits) == 0 {
		ev.step("quota", "skip", "no limits apply")
		return nil, nil
	}
	// The keys slice s.keys now that it no longer grows.
	begin := 0
	for i, end := range s.ends {
		limits[i].Key, begin = s.keys[begin:end:end], end
	}
	res, err := e.opts.Quota.Take(ctx, limits, s.statuses)
	if err != nil || (!res.Allowed && len(res.Statuses) == 0) {
		ev.step("quota", "deny", "quota store unavailable")
		return storeDegradedHeaders, &deniedStoreDegraded
	}
	if ev.req.Explain {
		explainQuota(ev, s.src, s.rates, res)
	}
	if len(res.Statuses) == 0 { // allowed by OnErrorAllow
		return nil, nil
	}
	t := tightest(res)
	if !res.Allowed {
		ev.limit = s.src[t]
	}
	if ev.dry { // a dryRun policy's answer is never sent
		if res.Allowed {
			return nil, nil
		}
		return nil, &deniedRateLimited
	}
	headers := rateLimitHeaders(res, t, s.rates[t], buf)
	if res.Allowed {
		return headers, nil
	}
	ev.message = rateLimitMessage(s.rates[t], res.Statuses[t])
	return headers, &deniedRateLimited
}

// rateLimitMessage is the 429 body's message for the limit that denied
// with rate r: it names the limit, its rate and when one request refills,
// e.g. rate limit "per-user" exceeded: 100 requests per 15m, burst 100;
// next request allowed in 9s.
func rateLimitMessage(r *policy.Rate, s quota.Status) string {
	return "rate limit " + r.NameText + " exceeded: " + r.Summary + "; next request allowed in " +
		policy.FormatDuration(time.Duration(retryAfterSeconds(s))*time.Second)
}

// explainQuota records, for tollgate check, what each limit allows and
// where its counter stands.
func explainQuota(ev *evaluation, src []*policy.Limit, rates []*policy.Rate, res quota.Result) {
	for i, l := range src {
		r := rates[i]
		by := l.By.String()
		if l.ByName != "" {
			by += ":" + l.ByName
		}
		detail := l.Name + " (by " + by + "): " + r.Summary + ": " + r.Explain()
		outcome := "ok"
		switch {
		case i >= len(res.Statuses): // allowed by OnErrorAllow
			detail += "; not counted: the quota store is unavailable"
		case !res.Statuses[i].Allowed:
			outcome = "deny"
			detail += "; 0 left, next request allowed in " + policy.FormatDuration(time.Duration(retryAfterSeconds(res.Statuses[i]))*time.Second)
		case !res.Allowed:
			detail += "; not charged (another limit denies), " + strconv.FormatInt(res.Statuses[i].Remaining, 10) + " left"
		default:
			detail += "; charged, " + strconv.FormatInt(res.Statuses[i].Remaining, 10) + " left, full again in " +
				policy.FormatDuration(time.Duration(ceilSeconds(res.Statuses[i].Reset))*time.Second)
		}
		ev.step("quota", outcome, detail)
	}
}

// claimSource looks up a verified token's claims (*token.Identity).
type claimSource interface {
	ClaimString(name string) (string, bool)
}

// keyInputs are the request's values that counter keys are built from.
type keyInputs struct {
	// claims is nil when no token was verified (an anonymous rule).
	claims          claimSource
	issuer, subject string
	ip              string // client IP; set before a by-ip or by-user+ip limit
	headers         map[string]string
}

// appendCounterKey appends the counter key of limit l for a request to dst
// (see policy.CounterPrefix for the format); ok is false when the limit
// does not apply (a token-keyed limit on an anonymous rule).
func appendCounterKey(dst []byte, l *policy.Limit, in *keyInputs) (_ []byte, ok bool) {
	if l.By.NeedsIdentity() && in.claims == nil {
		return dst, false
	}
	dst = append(dst, l.CounterPrefix...)
	switch l.By {
	case policy.ByUser:
		dst = policy.AppendCounterPart(dst, in.issuer)
		return policy.AppendCounterPart(dst, in.subject), true
	case policy.ByIP:
		return policy.AppendCounterPart(dst, in.ip), true
	case policy.ByUserIP:
		dst = policy.AppendCounterPart(dst, in.issuer)
		dst = policy.AppendCounterPart(dst, in.subject)
		return policy.AppendCounterPart(dst, in.ip), true
	case policy.ByClaim:
		v, found := in.claims.ClaimString(l.ByName)
		return appendValue(dst, v, found), true
	case policy.ByHeader:
		v, found := in.headers[l.ByName]
		return appendValue(dst, v, found), true
	}
	return dst, false
}

func appendValue(dst []byte, v string, found bool) []byte {
	if !found {
		return policy.AppendMissingCounterPart(dst)
	}
	return policy.AppendCounterPart(dst, v)
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

// tightest returns the index of the tightest limit of res: the denying one
// with the longest wait, or else the one with the fewest requests
// remaining. res must have Statuses.
func tightest(res quota.Result) int {
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
	return best
}

// Rate-limit headers in a decisionBuf: at most rateHeaders of them, and
// the values that are not the limit's own (remaining, reset, Retry-After
// and RateLimit) in rateTextLen bytes: a quoted limit name of at most 65
// bytes and three numbers of at most 19 digits, with ";r=" and ";t=".
const (
	rateHeaders = 6
	rateTextLen = 128
)

// rateLimitHeaders describes the limit of res at index best (tightest),
// whose rate is r, with the headers and their values in buf.
//
// The values are one string over buf.text, made with unsafe.String: buf
// is part of the Decision being filled, which the garbage collector keeps
// alive as long as any of its header values is referenced, and which is
// written again only when the Decision is reused or modified, the same
// lifetime DecideInto gives the header slices that point into it. (Were
// the text ever longer than buf.text, append would move it to a fresh
// array, which nothing writes again.)
func rateLimitHeaders(res quota.Result, best int, r *policy.Rate, buf *decisionBuf) []Header {
	s := res.Statuses[best]
	// The RateLimit value, "<name>";r=<remaining>;t=<reset>, holds the
	// remaining and reset values; Retry-After's follows it.
	b := append(buf.text[:0], r.NameText...)
	b = append(b, ";r="...)
	remaining := len(b)
	b = strconv.AppendInt(b, s.Remaining, 10)
	remainingEnd := len(b)
	b = append(b, ";t="...)
	reset := len(b)
	b = strconv.AppendInt(b, ceilSeconds(s.Reset), 10)
	rateLimitEnd := len(b)
	if !res.Allowed {
		b = strconv.AppendInt(b, retryAfterSeconds(s), 10)
	}
	text := unsafe.String(unsafe.SliceData(b), len(b))

	h := append(buf.rate[:0],
		Header{Name: HeaderLimit, Value: r.LimitText},
		Header{Name: HeaderRemaining, Value: text[remaining:remainingEnd]},
		Header{Name: HeaderReset, Value: text[reset:rateLimitEnd]},
	)
	if !res.Allowed {
		h = append(h, Header{Name: HeaderRetryAfter, Value: text[rateLimitEnd:]})
	}
	return append(h,
		Header{Name: HeaderRateLimitPolicy, Value: r.PolicyText},
		Header{Name: HeaderRateLimit, Value: text[:rateLimitEnd]},
	)
}

// retryAfterSeconds is the Retry-After of a denying status: its wait in
// seconds, rounded up, at least 1.
func retryAfterSeconds(s quota.Status) int64 {
	return max(ceilSeconds(s.RetryAfter), 1)
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
