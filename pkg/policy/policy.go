// Package policy is the compiled form of AuthPolicy objects, which the
// decision engine evaluates without parsing or allocating: host matchers,
// path templates, owner rules, limits and token settings. It imports the
// standard library only (and pkg/token, pkg/pathnorm): the compiler, which
// reads api/v1alpha1, is pkg/policy/compiler.
package policy

import "github.com/tollgate-dev/tollgate/pkg/token"

// A Policy is a compiled AuthPolicy. It is immutable once returned by
// the compiler (pkg/policy/compiler) and safe for concurrent use.
type Policy struct {
	Namespace  string
	Name       string
	Generation int64
	key        string // "namespace/name", built once by New

	// Hosts are the host matchers; empty means any host.
	Hosts []Host
	// PathPrefix is matched segment-wise: "/api" governs "/api" and
	// "/api/x" but not "/apix".
	PathPrefix string

	// JWT is nil when every rule is anonymous.
	JWT *JWT
	// DryRun decides, logs and counts, but allows.
	DryRun bool
	// Limits apply to every rule.
	Limits []Limit
	// Rules are tried in order; the first match decides.
	Rules []Rule
}

// New returns a Policy named namespace/name, to be filled by the compiler.
func New(namespace, name string) *Policy {
	return &Policy{Namespace: namespace, Name: name, key: namespace + "/" + name}
}

// Key returns "namespace/name", the identity used by context_extensions,
// metrics and counter keys.
func (p *Policy) Key() string {
	if p.key != "" {
		return p.key
	}
	return p.Namespace + "/" + p.Name
}

// JWT is the compiled jwt block. Presets are resolved: betterAuth has
// become Issuer, Audiences, JWKSURI and Algorithms; Algorithms are canonical
// JWA names ("Ed25519" is stored as "EdDSA") and never empty.
type JWT struct {
	token.Config

	TokenFrom []TokenSource
	// ForwardClaims are sorted by header name; header names are lower case.
	ForwardClaims []ForwardClaim
	StripToken    bool
}

// A TokenSource is one place a token is read from; exactly one of Header,
// Cookie and Query is set. Header is lower case.
type TokenSource struct {
	Header string
	Prefix string
	Cookie string
	Query  string
}

// A ForwardClaim sets the upstream request header Header (lower case) from
// the token's claim Claim.
type ForwardClaim struct {
	Header string
	Claim  string
}

// A Rule is a compiled rule.
type Rule struct {
	Name string
	// Methods is nil for any method.
	Methods []string
	// Path is nil when the rule matches any path under the policy's prefix.
	Path      *Template
	Owner     *Owner
	Anonymous bool
	Limits    []Limit
}

// MatchMethod reports whether the rule applies to method.
func (r *Rule) MatchMethod(method string) bool {
	if r.Methods == nil {
		return true
	}
	for _, m := range r.Methods {
		if m == method {
			return true
		}
	}
	return false
}

// OwnerSource says where the owner value is read from.
type OwnerSource int

// Owner sources.
const (
	OwnerFromPath OwnerSource = iota + 1
	OwnerFromQuery
	OwnerFromHeader
)

// An Owner requires that a value naming a user equal a claim of the token.
type Owner struct {
	Claim  string
	Source OwnerSource
	// Name is the template variable, query parameter or (lower-case)
	// header that holds the owner value.
	Name string
	// PathIndex is the index of Name among the rule template's variables
	// when Source is OwnerFromPath.
	PathIndex int
	// AllowIf bypasses the check; nil when absent.
	AllowIf *ClaimValues
}

// ClaimValues matches a claim against a set of values.
type ClaimValues struct {
	Claim  string
	Values []string
}

// Match reports whether any of values is in the set.
func (c *ClaimValues) Match(values []string) bool {
	for _, v := range values {
		for _, want := range c.Values {
			if v == want {
				return true
			}
		}
	}
	return false
}

// KeyKind says what a limit counts by.
type KeyKind int

// Limit key kinds.
const (
	ByUser KeyKind = iota + 1
	ByIP
	ByUserIP
	ByClaim
	ByHeader
)

// NeedsIdentity reports whether the key is built from the token.
func (k KeyKind) NeedsIdentity() bool { return k == ByUser || k == ByUserIP || k == ByClaim }

// String returns the kind as logs and metrics name it: "user", "ip",
// "user+ip", "claim" or "header" (the "by" field without the claim or
// header name, which Limit.ByName holds).
func (k KeyKind) String() string {
	switch k {
	case ByUser:
		return "user"
	case ByIP:
		return "ip"
	case ByUserIP:
		return "user+ip"
	case ByClaim:
		return "claim"
	case ByHeader:
		return "header"
	}
	return "unknown"
}

// A Limit is a compiled quota.
type Limit struct {
	Name string
	// Rate applies unless a tier replaces it.
	Rate
	By KeyKind
	// ByName is the claim (ByClaim) or lower-case header (ByHeader).
	ByName string
	// Tiers is nil when the limit has none.
	Tiers *Tiers
	// CounterPrefix is the fixed part of this limit's counter keys (see
	// CounterPrefix); the caller appends the request's values with
	// AppendCounterPart.
	CounterPrefix string
}

// Tiers selects a limit by the value of a claim.
type Tiers struct {
	Claim string
	// Values holds each tier's Rate, complete: the compiler fills in what
	// the tier leaves to the limit.
	Values map[string]*Rate
}

// For returns the rate that applies for a tier claim value (ok false
// when the token has no such claim).
func (l *Limit) For(tierValue string, ok bool) *Rate {
	if ok && l.Tiers != nil {
		if r, found := l.Tiers.Values[tierValue]; found {
			return r
		}
	}
	return &l.Rate
}
