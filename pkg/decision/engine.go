package decision

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// A QuotaStore charges the limits of one decision, all or nothing.
type QuotaStore interface {
	Take(ctx context.Context, limits []ratelimit.Limit) (ratelimit.Result, error)
}

// Options configures an Engine.
type Options struct {
	// Quota counts requests. Nil means limits are not enforced.
	Quota QuotaStore
	// DefaultAllow allows requests that match no policy (--default-action
	// allow); by default they are denied 403.
	DefaultAllow bool
	// TrustedHops is the number of proxies in front of the one that calls
	// tollgate whose X-Forwarded-For entries are trusted for the client IP.
	// 0 uses the source address only.
	TrustedHops int
	// NormalizePaths resolves dot segments and empty segments (RFC 3986
	// §5.2.4, then merged slashes; pathnorm.Normalize) instead of denying
	// them 400 (pathnorm.Strict, the default). Only for deployments whose
	// proxy forwards the path it normalized the same way.
	NormalizePaths bool
}

// An Engine decides requests against the current Snapshot. It is safe for
// concurrent use; Decide never locks on policy state.
type Engine struct {
	snapshot atomic.Pointer[Snapshot]
	opts     Options
}

// NewEngine returns an Engine serving an empty snapshot until Swap.
func NewEngine(opts Options) *Engine {
	e := &Engine{opts: opts}
	e.snapshot.Store(NewSnapshot(nil, nil))
	return e
}

// Swap makes s the snapshot that decides from now on and returns the
// previous one. In-flight decisions finish on the snapshot they started on.
func (e *Engine) Swap(s *Snapshot) *Snapshot { return e.snapshot.Swap(s) }

// Snapshot returns the current snapshot.
func (e *Engine) Snapshot() *Snapshot { return e.snapshot.Load() }

// evaluation carries the state of one decision through its checks.
type evaluation struct {
	req      *Request
	path     string
	entry    *entry
	rule     *policy.Rule
	captures []string
	identity *jwt.Identity
	steps    []Step
}

// step records a check when the request asks for an explanation. The
// detail comes in parts so that nothing is concatenated otherwise.
func (ev *evaluation) step(name, outcome string, detail ...string) {
	if ev.req.Explain {
		ev.steps = append(ev.steps, Step{Name: name, Outcome: outcome, Detail: strings.Join(detail, "")})
	}
}

// Decide authorizes one request. A deny is a Decision, not an error.
func (e *Engine) Decide(ctx context.Context, req *Request) Decision {
	var captureBuf [8]string
	ev := evaluation{req: req, captures: captureBuf[:0]}
	var d Decision
	if deny := e.decide(ctx, &ev, &d); deny != nil {
		headers := d.ResponseHeaders
		d = *deny
		if headers != nil {
			d.ResponseHeaders = headers
		}
	}
	d.Steps = ev.steps
	if ev.entry != nil {
		d.Policy = ev.entry.policy.Key()
		if p := ev.entry.policy; p.DryRun && !d.Allowed {
			d.DryRun, d.WouldDeny = true, true
			d.Allowed, d.Status = true, http.StatusOK
			d.ResponseHeaders = rateLimitHeadersOnly(d.ResponseHeaders)
			if p.JWT != nil {
				// The upstream must not see identity headers the client sent.
				for _, fc := range p.JWT.ForwardClaims {
					d.RemoveHeaders = append(d.RemoveHeaders, fc.Header)
				}
			}
		} else if ev.entry.policy.DryRun {
			d.DryRun = true
		}
	}
	if ev.rule != nil {
		d.Rule = ev.rule.Name
	}
	if ev.identity != nil {
		d.Subject = ev.identity.Subject
	}
	return d
}

// decide runs the checks in order. It fills d for an allow and returns nil,
// or returns the denial's template (with any response headers already in
// d). Templates are shared and never modified: small frames and no copies
// keep the check from growing the goroutine stack.
func (e *Engine) decide(ctx context.Context, ev *evaluation, d *Decision) *Decision {
	req := ev.req
	if !validMethod(req.Method) {
		ev.step("method", "deny", "not an HTTP method token")
		return &deniedInvalidMethod
	}
	// A malformed host is denied before selection, so that it can never
	// fall through to a wildcard or any-host policy, or to the default.
	host, ok := policy.ParseAuthority(req.Host)
	if !ok {
		ev.step("host", "deny", "malformed host or :authority")
		return &deniedInvalidHost
	}
	clean := pathnorm.Strict
	if e.opts.NormalizePaths {
		clean = pathnorm.Normalize
	}
	path, err := clean(req.Path)
	if err != nil {
		ev.step("path", "deny", err.Error())
		return &deniedInvalidPath
	}
	ev.path = path
	ev.step("path", "ok", path)

	snap := e.snapshot.Load()
	if req.PolicyKey != "" {
		ev.entry = snap.byKey[req.PolicyKey]
		if ev.entry == nil {
			ev.step("policy", "deny", "context_extensions selects unknown policy ", req.PolicyKey)
			return &deniedUnknownPolicy
		}
	} else {
		ev.entry = snap.selectPolicy(host, path)
	}
	if ev.entry == nil {
		if e.opts.DefaultAllow {
			ev.step("policy", "allow", "no policy matches; --default-action allow")
			d.Allowed, d.Status, d.Reason = true, http.StatusOK, ReasonDefaultAllowed
			return nil
		}
		ev.step("policy", "deny", "no policy matches host and path")
		return &deniedNoPolicy
	}
	p := ev.entry.policy
	ev.step("policy", "ok", p.Key())

	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.MatchMethod(req.Method) {
			continue
		}
		if r.Path == nil {
			ev.rule = r
			break
		}
		if caps, ok := r.Path.Match(path, ev.captures); ok {
			ev.rule, ev.captures = r, caps
			break
		}
	}
	if ev.rule == nil {
		ev.step("rule", "deny", "no rule matches method and path")
		return &deniedNoRule
	}
	ev.step("rule", "ok", ev.rule.Name)

	if ev.rule.Anonymous {
		ev.step("token", "skip", "anonymous rule")
	} else {
		if deny := e.authenticate(ctx, ev); deny != nil {
			return deny
		}
		if deny := checkOwner(ev); deny != nil {
			return deny
		}
	}

	headers, deny := e.charge(ctx, ev)
	d.ResponseHeaders = headers
	if deny != nil {
		return deny
	}
	d.Allowed, d.Status, d.Reason = true, http.StatusOK, ReasonAllowed
	if !ev.rule.Anonymous {
		d.UpstreamHeaders, d.RemoveHeaders = identityHeaders(p.JWT, ev.identity)
	}
	return nil
}

func (e *Engine) authenticate(ctx context.Context, ev *evaluation) *Decision {
	p := ev.entry.policy
	raw, found := extractToken(p.JWT.TokenFrom, ev.req)
	if !found {
		ev.step("token", "deny", "no token in the request")
		return unauthenticated(jwt.ReasonMissing)
	}
	id, err := ev.entry.verifier.Verify(ctx, raw)
	if err != nil {
		reason := jwt.ReasonOf(err)
		ev.step("token", "deny", string(reason))
		return unauthenticated(reason)
	}
	ev.identity = id
	ev.step("token", "ok", "sub=", id.Subject)
	return nil
}

func checkOwner(ev *evaluation) *Decision {
	o := ev.rule.Owner
	if o == nil {
		return nil
	}
	if o.AllowIf != nil && o.AllowIf.Match(ev.identity.ClaimStrings(o.AllowIf.Claim)) {
		ev.step("owner", "bypass", o.AllowIf.Claim, " claim allows any owner")
		return nil
	}
	var value string
	switch o.Source {
	case policy.OwnerFromPath:
		if o.PathIndex < len(ev.captures) {
			value = ev.captures[o.PathIndex]
		}
		if strings.IndexByte(value, '%') >= 0 {
			// The normalized path keeps reserved characters escaped;
			// compare the value the upstream will see.
			if v, err := url.PathUnescape(value); err == nil {
				value = v
			}
		}
	case policy.OwnerFromQuery:
		value = queryValue(ev.req.Path, o.Name)
	case policy.OwnerFromHeader:
		value = ev.req.Headers[o.Name]
	}
	if value == "" {
		ev.step("owner", "deny", "no owner value in the request")
		return &deniedOwnerMissing
	}
	claim, ok := ev.identity.ClaimString(o.Claim)
	if !ok || claim != value {
		ev.step("owner", "deny", "owner ", value, " is not the token's ", o.Claim)
		return &deniedOwner
	}
	ev.step("owner", "ok", o.Claim, " matches")
	return nil
}

// identityHeaders returns the forwarded-claim headers to set and the
// headers to remove from the upstream request.
func identityHeaders(j *policy.JWT, id *jwt.Identity) ([]Header, []string) {
	var set []Header
	var remove []string
	for _, fc := range j.ForwardClaims {
		if v, ok := id.ClaimString(fc.Claim); ok && validHeaderValue(v) {
			if set == nil {
				set = make([]Header, 0, len(j.ForwardClaims))
			}
			set = append(set, Header{Name: fc.Header, Value: v})
		} else {
			remove = append(remove, fc.Header)
		}
	}
	if j.StripToken {
		for _, ts := range j.TokenFrom {
			if ts.Header != "" {
				remove = append(remove, ts.Header)
			}
		}
	}
	return set, remove
}

// validHeaderValue reports whether v can be sent as a header value: a claim
// with CR, LF or other control characters would let a token's issuer (or
// anyone who can set a claim, such as a user's display name) inject headers.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
