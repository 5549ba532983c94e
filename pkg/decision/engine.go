package decision

import (
	"context"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/quota"
	"github.com/tollgate-dev/tollgate/pkg/token"
)

// A QuotaStore charges the limits of one decision, all or nothing
// (quota.Store: the limits' keys and statuses are borrowed for the Take).
type QuotaStore interface {
	Take(ctx context.Context, limits []quota.Limit, statuses []quota.Status) (quota.Result, error)
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

// evaluation carries the state of one policy's decision through its
// checks.
type evaluation struct {
	req  *Request
	snap *Snapshot
	// path is the request path as matched (pathnorm).
	path     string
	entry    *entry
	rule     *policy.Rule
	identity *token.Identity
	// refusedSub is the "sub" of an authentic token refused for its
	// claims (expired, wrong audience...), for the deny log line.
	refusedSub string
	// limit is the limit that denied the request 429; nil otherwise.
	limit *policy.Limit
	// message replaces the denial's message (and body) when set: a 429
	// names its limit and when it refills.
	message string
	// dry is set for a dryRun policy's evaluation, whose denial is never
	// answered.
	dry bool
	// overrides is set when a method override names a method other than
	// the request's own.
	overrides bool
	steps     []Step
}

// step records a check when the request asks for an explanation. The
// detail comes in parts so that nothing is concatenated otherwise.
func (ev *evaluation) step(name, outcome string, detail ...string) {
	if ev.req.Explain {
		ev.steps = append(ev.steps, Step{Name: name, Outcome: outcome, Detail: strings.Join(detail, "")})
	}
}

// Decide authorizes one request. A deny is a Decision, not an error.
//
// The answer comes from the enforcing policy that governs the request, or
// from the default action when none does. A dryRun policy never answers:
// when it would govern the request if it were enforcing, it is evaluated
// beside, and its would-be decision is returned in Decision.DryRun.
//
// Decide allocates the Decision's header slices; servers use DecideInto.
func (e *Engine) Decide(ctx context.Context, req *Request) Decision {
	d := new(Decision)
	e.DecideInto(ctx, req, d)
	return *d
}

// DecideInto decides as Decide does and writes the Decision to d, which
// it overwrites. The header slices of d, and the values of its rate-limit
// headers, may point into d itself, so that deciding allocates nothing:
// they stay valid while d is neither reused nor modified, and copies of d
// share them. Clone a value (strings.Clone) to keep it longer.
func (e *Engine) DecideInto(ctx context.Context, req *Request, d *Decision) {
	*d = Decision{}
	ev := evaluation{req: req, snap: e.snapshot.Load()}
	var dryRun *entry
	deny := e.prepare(&ev, &dryRun)
	if deny == nil {
		deny = e.decide(ctx, &ev, d)
	}
	if deny != nil {
		d.setDenial(deny)
		if ev.message != "" {
			d.Message, d.body = ev.message, denyBody(d.Code, ev.message)
		}
	}
	if dryRun != nil {
		d.DryRun = e.dryRun(ctx, &ev, dryRun)
	}
	d.Steps = ev.steps
	if ev.entry != nil {
		d.Policy = ev.entry.policy.Key()
	}
	if ev.rule != nil {
		d.Rule = ev.rule.Name
	}
	if ev.identity != nil {
		d.Subject = ev.identity.Subject
	} else {
		d.Subject = ev.refusedSub
	}
	d.Limit = ev.limit
}

// prepare checks what does not depend on a policy (method, host, path,
// method overrides) and selects the enforcing policy (ev.entry, nil when
// none governs) and the dryRun policy to evaluate beside it.
func (e *Engine) prepare(ev *evaluation, dryRun **entry) *Decision {
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
	n := 0
	if !methodOverrides(req, func(string) bool { n++; return n <= maxOverrides }) {
		ev.step("method-override", "deny", "not a method token, or too many")
		return &deniedInvalidOverride
	}
	ev.overrides = n > 0

	snap := ev.snap
	if req.PolicyKey != "" {
		selected := snap.byKey[req.PolicyKey]
		switch {
		case selected == nil:
			ev.step("policy", "deny", "context_extensions selects unknown policy ", req.PolicyKey)
			return &deniedUnknownPolicy
		case selected.policy.DryRun:
			*dryRun = selected
		default:
			ev.entry = selected
		}
		return nil
	}
	ev.entry, *dryRun = snap.selectPolicy(host, path)
	return nil
}

// decide runs the checks of the policy in ev.entry in order, or applies
// the default action when it is nil. It fills d for an allow and returns
// nil, or returns the denial's template (with any response headers already
// in d). Templates are shared and never modified: small frames and no
// copies keep the check from growing the goroutine stack.
func (e *Engine) decide(ctx context.Context, ev *evaluation, d *Decision) *Decision {
	if ev.entry == nil {
		if e.opts.DefaultAllow {
			ev.step("policy", "allow", "no policy matches; --default-action allow")
			d.Allowed, d.Status, d.Reason = true, statusOK, ReasonDefaultAllowed
			d.RemoveHeaders = ev.snap.forwarded
			return nil
		}
		ev.step("policy", "deny", "no policy matches host and path")
		return &deniedNoPolicy
	}
	p := ev.entry.policy
	ev.step("policy", "ok", p.Key())

	// The captures stay out of ev, whose contents escape through steps:
	// kept apart, their buffer stays on the stack.
	var captureBuf [8]string
	var captures []string
	ev.rule, captures = matchRule(p, ev.req.Method, ev.path, captureBuf[:0])
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
		if deny := checkOwner(ev, ev.rule, captures); deny != nil {
			return deny
		}
	}
	if ev.overrides {
		if deny := e.checkOverrides(ctx, ev); deny != nil {
			return deny
		}
	}

	headers, deny := e.charge(ctx, ev, &d.buf)
	d.ResponseHeaders = headers
	if deny != nil {
		return deny
	}
	d.Allowed, d.Status, d.Reason = true, statusOK, ReasonAllowed
	// Every allow removes every header that any served policy forwards,
	// so that no client copy of one reaches the upstream.
	if ev.identity != nil {
		d.UpstreamHeaders, d.RemoveHeaders = identityHeaders(p.JWT, ev.identity, ev.entry.otherForwarded, &d.buf)
	} else {
		d.RemoveHeaders = ev.snap.forwarded
	}
	return nil
}

// matchRule returns the first rule of p that matches method and path, and
// captures extended with the rule's variables; nil when none does.
func matchRule(p *policy.Policy, method, path string, captures []string) (*policy.Rule, []string) {
	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.MatchMethod(method) {
			continue
		}
		if r.Path == nil {
			return r, captures
		}
		if caps, ok := r.Path.Match(path, captures); ok {
			return r, caps
		}
	}
	return nil, captures
}

// checkOverrides requires that the request be allowed for every method a
// method override names too: a rule of the policy matches it, and that
// rule's token and owner checks pass. Any failure is 403 (a 503 for keys
// that cannot be had stays a 503).
func (e *Engine) checkOverrides(ctx context.Context, ev *evaluation) *Decision {
	var deny *Decision
	methodOverrides(ev.req, func(m string) bool {
		deny = e.checkOverride(ctx, ev, m)
		return deny == nil
	})
	return deny
}

func (e *Engine) checkOverride(ctx context.Context, ev *evaluation, method string) *Decision {
	var captureBuf [8]string
	r, captures := matchRule(ev.entry.policy, method, ev.path, captureBuf[:0])
	if r == nil {
		ev.step("method-override", "deny", "no rule allows ", method)
		return &deniedMethodOverride
	}
	if !r.Anonymous {
		if ev.identity == nil {
			if deny := e.authenticate(ctx, ev); deny != nil {
				if deny.Status == statusServiceUnavailable {
					return deny
				}
				return &deniedMethodOverride
			}
		}
		if checkOwner(ev, r, captures) != nil {
			return &deniedMethodOverride
		}
	}
	ev.step("method-override", "ok", method, " allowed by rule ", r.Name)
	return nil
}

// dryRun evaluates the dryRun policy dry beside the decision in ev and
// returns its would-be decision. It charges dry's own limits, never the
// enforcing policy's.
func (e *Engine) dryRun(ctx context.Context, ev *evaluation, dry *entry) DryRunDecision {
	dv := evaluation{req: ev.req, snap: ev.snap, path: ev.path, entry: dry, overrides: ev.overrides, dry: true}
	var d Decision
	out := DryRunDecision{Policy: dry.policy.Key(), Status: statusOK, Reason: ReasonAllowed}
	if deny := e.decide(ctx, &dv, &d); deny != nil {
		out.Status, out.Reason = deny.Status, deny.Reason
	}
	if dv.rule != nil {
		out.Rule = dv.rule.Name
	}
	if dv.identity != nil {
		out.Subject = dv.identity.Subject
	} else {
		out.Subject = dv.refusedSub
	}
	out.Limit = dv.limit
	if ev.req.Explain {
		for _, s := range dv.steps {
			ev.steps = append(ev.steps, Step{Name: "dry-run " + s.Name, Outcome: s.Outcome, Detail: s.Detail})
		}
	}
	return out
}

func (e *Engine) authenticate(ctx context.Context, ev *evaluation) *Decision {
	p := ev.entry.policy
	raw, found := extractToken(p.JWT.TokenFrom, ev.req)
	if !found {
		ev.step("token", "deny", "no token in the request")
		return unauthenticated(token.ReasonMissing)
	}
	id, err := ev.entry.verifier.Verify(ctx, raw)
	if err != nil {
		reason := token.ReasonOf(err)
		ev.refusedSub = token.SubjectOf(err)
		ev.step("token", "deny", string(reason))
		return unauthenticated(reason)
	}
	ev.identity = id
	ev.step("token", "ok", "sub=", id.Subject)
	return nil
}

// checkOwner checks the owner block of rule r, whose template variables
// are in captures, against the verified identity.
func checkOwner(ev *evaluation, r *policy.Rule, captures []string) *Decision {
	o := r.Owner
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
		if o.PathIndex < len(captures) {
			value = captures[o.PathIndex]
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
// headers to remove from the upstream request: others (the headers other
// served policies forward; shared, never modified), the policy's own that
// the token has no claim for, and the token header with stripToken. The
// slices it returns are in buf when they fit.
func identityHeaders(j *policy.JWT, id *token.Identity, others []string, buf *decisionBuf) ([]Header, []string) {
	set := buf.headers[:0]
	remove := others // cap == len: an append copies
	copied := false
	removeHeader := func(h string) {
		if !copied && len(others) < len(buf.remove) {
			remove = append(buf.remove[:0], others...)
		}
		copied = true
		remove = append(remove, h)
	}
	for _, fc := range j.ForwardClaims {
		if v, ok := id.ClaimString(fc.Claim); ok && validHeaderValue(v) {
			set = append(set, Header{Name: fc.Header, Value: v})
		} else {
			removeHeader(fc.Header)
		}
	}
	if j.StripToken {
		for _, ts := range j.TokenFrom {
			if ts.Header != "" {
				removeHeader(ts.Header)
			}
		}
	}
	if len(set) == 0 {
		set = nil
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
