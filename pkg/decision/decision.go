// Package decision is tollgate's pure decision core: request attributes in,
// an allow or deny decision out. It knows nothing of gRPC, HTTP, Kubernetes
// or Redis; adapters translate their requests into a Request and a Decision
// into their responses.
//
// The order of checks follows SPEC.md: check the method, host and path
// (deny what backends would not all read the same way), select the
// enforcing policy, select the rule, verify the token (unless the rule is
// anonymous), check ownership and method overrides, charge quotas, answer;
// then evaluate the dryRun policy that would govern the request, beside.
package decision

import (
	"encoding/json"

	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/token"
)

// A Request holds the attributes of the request being authorized.
type Request struct {
	// Method is the method exactly as sent: it is matched case-sensitively
	// and a value that is no method token is denied 400.
	Method string
	// Host is the :authority, possibly with a port; a malformed one is
	// denied 400 (policy.ParseAuthority).
	Host string
	// Path is the raw request target: path, query and fragment. A path not
	// in normal form is denied 400 unless Options.NormalizePaths is set
	// (pathnorm).
	Path string
	// Headers maps lower-case header names to values.
	Headers map[string]string
	// SourceIP is the address of the peer that sent the request to the
	// proxy, without port.
	SourceIP string
	// PolicyKey is an explicitly selected policy ("namespace/name"), from
	// Envoy's context_extensions["policy"]; empty when not set.
	PolicyKey string
	// ID is the request's id as the proxy gave it apart from the headers
	// (Envoy's attributes.request.http.id), for logs; empty when none.
	// Logs fall back to the x-request-id header. It takes no part in the
	// decision.
	ID string
	// Explain records every step in Decision.Steps (tollgate check). It
	// costs allocations; servers leave it off.
	Explain bool
}

// Error codes of deny bodies.
const (
	CodeBadRequest      = "bad_request"
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeRateLimited     = "rate_limited"
	CodeUnavailable     = "unavailable"
)

// Reasons of denials that are not token failures (those carry the jwt
// package's reason codes).
const (
	ReasonInvalidPath     = "invalid_path"
	ReasonInvalidHost     = "invalid_host"
	ReasonInvalidMethod   = "invalid_method"
	ReasonNoPolicy        = "no_policy"
	ReasonUnknownPolicy   = "unknown_policy"
	ReasonNoRule          = "no_rule"
	ReasonOwnerMismatch   = "owner_mismatch"
	ReasonOwnerMissing    = "owner_missing"
	ReasonRateLimited     = "rate_limited"
	ReasonStoreDegraded   = "quota_store_unavailable"
	ReasonAllowed         = "allowed"
	ReasonDefaultAllowed  = "default_allow"
	ReasonMethodOverride  = "method_override"
	ReasonInvalidOverride = "invalid_method_override"
)

// A Header is one header name and value. Names are lower case.
type Header struct {
	Name  string
	Value string
}

// A Decision is the answer to a Request.
type Decision struct {
	Allowed bool
	// Status is the HTTP status: 200 when allowed, else 400, 401, 403, 429
	// or 503 (keys to verify the token cannot be had).
	Status int
	// Code is the deny body's error code; empty when allowed.
	Code string
	// Reason is a low-cardinality machine reason, for logs and metrics.
	Reason string
	// Message is the deny body's human-readable text: fixed per reason,
	// except that a 429 names its limit, the limit's rate and when the next
	// request is allowed. It never holds request data.
	Message string

	// Policy ("namespace/name") and Rule that governed the request; empty
	// when none did.
	Policy string
	Rule   string
	// Subject is the "sub" of the token whose signature verified (also when
	// its claims, exp, iss, aud..., refused it), for logs; empty when none
	// did.
	Subject string
	// Limit is the limit that denied the request (reason rate_limited),
	// for logs and metrics: its Name and what it counts By. Nil otherwise.
	// It belongs to the snapshot and must not be modified.
	Limit *policy.Limit
	// DryRun is the would-be decision of the dryRun policy evaluated
	// beside the one that answered; its Policy is empty when none was.
	DryRun DryRunDecision

	// UpstreamHeaders are set on the upstream request, replacing any
	// client-sent value.
	UpstreamHeaders []Header
	// RemoveHeaders are removed from the upstream request: forwarded-claim
	// headers the token has no claim for (client copies must never reach
	// the upstream), and the token header when stripToken is set.
	RemoveHeaders []string
	// ResponseHeaders go to the client, on allow and deny alike
	// (X-RateLimit-*, Retry-After, WWW-Authenticate).
	ResponseHeaders []Header

	// Steps explains the decision when Request.Explain was set.
	Steps []Step

	// body is Body's result, set on the denial templates.
	body string
	// buf holds what the header slices above point to when the Decision
	// was filled by Engine.DecideInto, so that deciding allocates nothing.
	buf decisionBuf
}

// inlineHeaders is the number of headers of a decision that fit its
// decisionBuf; more are allocated.
const inlineHeaders = 8

// A decisionBuf holds the header slices of one Decision, and the values of
// its rate-limit headers (see rateLimitHeaders).
type decisionBuf struct {
	headers [inlineHeaders]Header
	remove  [inlineHeaders]string
	rate    [rateHeaders]Header
	text    [rateTextLen]byte
}

// A DryRunDecision is what a dryRun policy would have answered. It never
// changes the answer; it is logged and counted.
type DryRunDecision struct {
	// Policy ("namespace/name") is empty when no dryRun policy was
	// evaluated.
	Policy string
	Rule   string
	// Status is 200 when the policy would allow, else the deny status.
	Status int
	Reason string
	// Subject is as Decision.Subject.
	Subject string
	// Limit is the limit that would deny the request; nil otherwise.
	Limit *policy.Limit
}

// Evaluated reports whether a dryRun policy was evaluated.
func (d *DryRunDecision) Evaluated() bool { return d.Policy != "" }

// WouldDeny reports whether the dryRun policy would have denied.
func (d *DryRunDecision) WouldDeny() bool { return d.Policy != "" && d.Status != statusOK }

// A Step is one check of the decision, for explanations.
type Step struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// Body returns the JSON deny body: {"error": code, "message": text}. The
// denials of the decision core carry theirs, built once.
func (d *Decision) Body() string {
	if d.body != "" {
		return d.body
	}
	return denyBody(d.Code, d.Message)
}

func denyBody(code, message string) string {
	b, _ := json.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
	return string(b)
}

// HTTP statuses of decisions, with net/http's values: the core does not
// import net/http (see deps_test.go).
const (
	statusOK                 = 200
	statusBadRequest         = 400
	statusUnauthorized       = 401
	statusForbidden          = 403
	statusTooManyRequests    = 429
	statusServiceUnavailable = 503
)

// setDenial makes d, in which decide has set at most ResponseHeaders, the
// denial template t: t's answer, the only fields a template sets
// (TestDenyTemplatesSetOnlyTheirAnswer), keeping the response headers
// already in d, if any. d's buffer, which they may point into, stays in
// place: copying it out and back would cost more than the rest of a
// denial.
func (d *Decision) setDenial(t *Decision) {
	d.Allowed, d.Status, d.Code, d.Reason, d.Message, d.body = false, t.Status, t.Code, t.Reason, t.Message, t.body
	if d.ResponseHeaders == nil {
		d.ResponseHeaders = t.ResponseHeaders
	}
}

// denialTemplates returns every denial template, for tests.
func denialTemplates() []*Decision {
	out := []*Decision{&deniedInvalidPath, &deniedInvalidHost, &deniedInvalidMethod, &deniedInvalidOverride, &deniedMethodOverride,
		&deniedNoPolicy, &deniedUnknownPolicy, &deniedNoRule, &deniedOwner, &deniedOwnerMissing, &deniedRateLimited, &deniedStoreDegraded}
	for _, d := range deniedToken {
		out = append(out, d)
	}
	return out
}

func deny(status int, code, reason, message string) Decision {
	return Decision{Status: status, Code: code, Reason: reason, Message: message, body: denyBody(code, message)}
}

var (
	deniedInvalidPath   = deny(statusBadRequest, CodeBadRequest, ReasonInvalidPath, "the request path is not allowed")
	deniedInvalidHost   = deny(statusBadRequest, CodeBadRequest, ReasonInvalidHost, "the request host is malformed")
	deniedInvalidMethod = deny(statusBadRequest, CodeBadRequest, ReasonInvalidMethod, "the request method is malformed")
	// A method override that is no method token, or too many of them.
	deniedInvalidOverride = deny(statusBadRequest, CodeBadRequest, ReasonInvalidOverride, "the method override is malformed")
	deniedMethodOverride  = deny(statusForbidden, CodeForbidden, ReasonMethodOverride, "the request is not allowed for the method its override names")
	deniedNoPolicy        = deny(statusForbidden, CodeForbidden, ReasonNoPolicy, "no policy governs this request")
	deniedUnknownPolicy   = deny(statusForbidden, CodeForbidden, ReasonUnknownPolicy, "the selected policy does not exist")
	deniedNoRule          = deny(statusForbidden, CodeForbidden, ReasonNoRule, "no rule allows this request")
	deniedOwner           = deny(statusForbidden, CodeForbidden, ReasonOwnerMismatch, "this resource belongs to another user")
	deniedOwnerMissing    = deny(statusForbidden, CodeForbidden, ReasonOwnerMissing, "the request does not name the resource owner")
	deniedRateLimited     = deny(statusTooManyRequests, CodeRateLimited, ReasonRateLimited, "rate limit exceeded")
	deniedStoreDegraded   = deny(statusTooManyRequests, CodeRateLimited, ReasonStoreDegraded, "rate limits cannot be checked right now")
)

// Realm is the realm of every Bearer challenge.
const Realm = "tollgate"

// KeysRetryAfter is the Retry-After, in seconds, of a 503 for keys that
// cannot be had: the JWKS is retried in the background within seconds.
const KeysRetryAfter = "5"

// deniedToken holds the deny template of every token failure, by reason:
//   - no token: 401 with a bare challenge, Bearer realm="tollgate" (RFC 6750
//     §3.1: no error code when the request carried no credentials);
//   - keys that cannot be had: 503 with Retry-After, code unavailable — a
//     server-side outage, not a reason for the client to re-authenticate;
//   - every other failure: 401 with error="invalid_token" and an
//     error_description naming the class (token.Reason.Description), never
//     the token.
var deniedToken = func() map[token.Reason]*Decision {
	m := make(map[token.Reason]*Decision)
	for _, r := range token.Reasons() {
		var d Decision
		switch r {
		case token.ReasonKeysUnavailable:
			d = deny(statusServiceUnavailable, CodeUnavailable, string(r), "token verification keys are unavailable; retry later")
			d.ResponseHeaders = []Header{{Name: "retry-after", Value: KeysRetryAfter}}
		case token.ReasonMissing:
			d = deny(statusUnauthorized, CodeUnauthenticated, string(r), "a bearer token is required")
			d.ResponseHeaders = []Header{{Name: "www-authenticate", Value: `Bearer realm="` + Realm + `"`}}
		default:
			d = deny(statusUnauthorized, CodeUnauthenticated, string(r), "a valid bearer token is required: "+r.Description())
			d.ResponseHeaders = []Header{{Name: "www-authenticate",
				Value: `Bearer realm="` + Realm + `", error="invalid_token", error_description="` + r.Description() + `"`}}
		}
		m[r] = &d
	}
	return m
}()

// unauthenticated returns the shared deny template for a token failure
// (a 401, or the 503 of keys_unavailable).
func unauthenticated(reason token.Reason) *Decision {
	if d, ok := deniedToken[reason]; ok {
		return d
	}
	return deniedToken[token.ReasonMalformed]
}
