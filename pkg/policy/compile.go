package policy

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// Defaults and bounds applied by Compile.
const (
	DefaultClockSkew = 30 * time.Second
	MaxClockSkew     = 5 * time.Minute
	MinPeriod        = time.Second
	MaxPeriod        = 744 * time.Hour
	MaxRequests      = 1_000_000_000
	betterAuthJWKS   = "/api/auth/jwks"
)

// An Error lists every problem found in one AuthPolicy, each with its field
// path (spec.rules[0].owner.path).
type Error struct {
	Namespace string
	Name      string
	Errs      field.ErrorList
}

func (e *Error) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return fmt.Sprintf("policy %s/%s: %s", e.Namespace, e.Name, strings.Join(msgs, "; "))
}

// FieldErrors returns the field errors of err when it is (or wraps) an
// *Error, and nil otherwise.
func FieldErrors(err error) field.ErrorList {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Errs
	}
	return nil
}

// Compile checks an AuthPolicy and compiles it. On any problem it returns an
// *Error that lists all of them, not only the first.
func Compile(ap *v1alpha1.AuthPolicy) (*Policy, error) {
	c := compiler{ns: ap.Namespace, name: ap.Name}
	if c.ns == "" {
		c.ns = "default"
	}
	p := c.policy(&ap.Spec)
	if len(c.errs) > 0 {
		return nil, &Error{Namespace: c.ns, Name: ap.Name, Errs: c.errs}
	}
	p.Generation = ap.Generation
	return p, nil
}

type compiler struct {
	ns, name string
	errs     field.ErrorList
}

func (c *compiler) add(err *field.Error) { c.errs = append(c.errs, err) }

var (
	specPath = field.NewPath("spec")

	hostPattern       = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	namePattern       = regexp.MustCompile(`^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	headerNamePattern = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)
	queryNamePattern  = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
	claimNamePattern  = regexp.MustCompile(`^[A-Za-z0-9_.:/-]+$`)
	durationPattern   = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`)
	secretNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	secretKeyPattern  = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

var httpMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

// reservedHeaders may not be set from claims: they would change routing,
// framing or authentication of the upstream request.
var reservedHeaders = map[string]bool{
	"host": true, "authorization": true, "content-length": true, "transfer-encoding": true,
	"connection": true, "te": true, "upgrade": true, "cookie": true, "proxy-authorization": true,
	"x-forwarded-for": true, "x-forwarded-proto": true, "x-forwarded-host": true, "x-envoy-original-path": true,
}

func (c *compiler) policy(spec *v1alpha1.AuthPolicySpec) *Policy {
	p := &Policy{Namespace: c.ns, Name: c.name, key: c.ns + "/" + c.name}

	hostsPath := specPath.Child("hosts")
	seenHosts := map[string]bool{}
	for i, h := range spec.Hosts {
		fp := hostsPath.Index(i)
		switch {
		case len(h) > 253 || !hostPattern.MatchString(h):
			c.add(field.Invalid(fp, h, `must be a lower-case DNS name, optionally starting with "*."`))
		case seenHosts[h]:
			c.add(field.Duplicate(fp, h))
		default:
			seenHosts[h] = true
			if rest, ok := strings.CutPrefix(h, "*"); ok {
				p.Hosts = append(p.Hosts, Host{Name: rest, Wildcard: true})
			} else {
				p.Hosts = append(p.Hosts, Host{Name: h})
			}
		}
	}

	p.PathPrefix = spec.PathPrefix
	if p.PathPrefix == "" {
		p.PathPrefix = "/"
	}
	prefixOK := true
	if err := checkPathPrefix(p.PathPrefix); err != "" {
		c.add(field.Invalid(specPath.Child("pathPrefix"), spec.PathPrefix, err))
		prefixOK = false
	}

	switch spec.Mode {
	case "", v1alpha1.ModeEnforce:
	case v1alpha1.ModeDryRun:
		p.DryRun = true
	default:
		c.add(field.NotSupported(specPath.Child("mode"), spec.Mode, []string{v1alpha1.ModeEnforce, v1alpha1.ModeDryRun}))
	}

	if spec.JWT != nil {
		p.JWT = c.jwt(spec.JWT, specPath.Child("jwt"))
	}

	p.Limits = c.limits(spec.Limits, specPath.Child("limits"), p.Key()+":", nil, false)
	limitNames := map[string]bool{}
	for _, l := range p.Limits {
		limitNames[l.Name] = true
	}

	rulesPath := specPath.Child("rules")
	if len(spec.Rules) == 0 {
		c.add(field.Required(rulesPath, "at least one rule is required"))
	}
	if len(spec.Rules) > 256 {
		c.add(field.TooMany(rulesPath, len(spec.Rules), 256))
	}
	ruleNames := map[string]bool{}
	for i := range spec.Rules {
		r := &spec.Rules[i]
		fp := rulesPath.Index(i)
		if ruleNames[r.Name] {
			c.add(field.Duplicate(fp.Child("name"), r.Name))
		}
		ruleNames[r.Name] = true
		rule := c.rule(r, fp, p, limitNames, prefixOK)
		if !rule.Anonymous && spec.JWT == nil {
			c.add(field.Required(specPath.Child("jwt"), fmt.Sprintf("jwt is required unless every rule is anonymous (rule %q is not)", r.Name)))
		}
		p.Rules = append(p.Rules, rule)
	}
	return p
}

func checkPathPrefix(prefix string) string {
	switch {
	case !strings.HasPrefix(prefix, "/"):
		return `must start with "/"`
	case len(prefix) > 1024:
		return "must be at most 1024 characters"
	case strings.Contains(prefix, "//"):
		return `must not contain "//" (paths are normalized before matching)`
	case strings.ContainsAny(prefix, "?#\\%{}*"):
		return "must be a plain normalized path (no ?, #, \\, %, {, } or *)"
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return "must not contain dot segments"
		}
	}
	return ""
}

func (c *compiler) jwt(in *v1alpha1.JWT, fp *field.Path) *JWT {
	out := &JWT{
		Config: jwt.Config{
			Issuer:     in.Issuer,
			Audiences:  in.Audiences,
			JWKSURI:    in.JWKSURI,
			InlineJWKS: in.JWKS,
			Discovery:  in.Discovery,
		},
		StripToken: in.StripToken,
	}

	sources := []string{}
	if in.JWKSURI != "" {
		sources = append(sources, "jwksURI")
		c.checkURL(fp.Child("jwksURI"), in.JWKSURI)
	}
	if in.JWKS != "" {
		sources = append(sources, "jwks")
		if len(in.JWKS) > 65536 {
			c.add(field.TooLong(fp.Child("jwks"), "", 65536))
		}
	}
	if in.SecretRef != nil {
		sources = append(sources, "secretRef")
		sp := fp.Child("secretRef")
		if !secretNamePattern.MatchString(in.SecretRef.Name) || len(in.SecretRef.Name) > 253 {
			c.add(field.Invalid(sp.Child("name"), in.SecretRef.Name, "must be a Secret name (lower-case DNS subdomain)"))
		}
		if !secretKeyPattern.MatchString(in.SecretRef.Key) || len(in.SecretRef.Key) > 253 {
			c.add(field.Invalid(sp.Child("key"), in.SecretRef.Key, "must be a Secret data key ([-._a-zA-Z0-9]+)"))
		}
		out.Secret = &jwt.SecretRef{Namespace: c.ns, Name: in.SecretRef.Name, Key: in.SecretRef.Key}
	}
	if in.Discovery {
		sources = append(sources, "discovery")
	}
	if in.BetterAuth != nil {
		sources = append(sources, "betterAuth")
		bp := fp.Child("betterAuth", "baseURL")
		if c.checkURL(bp, in.BetterAuth.BaseURL) {
			base := strings.TrimSuffix(in.BetterAuth.BaseURL, "/")
			if out.Issuer == "" {
				out.Issuer = base
			}
			if len(out.Audiences) == 0 {
				out.Audiences = []string{base}
			}
			out.JWKSURI = base + betterAuthJWKS
		}
	}
	if len(sources) != 1 {
		c.add(field.Invalid(fp, strings.Join(sources, ", "), "exactly one key source must be set: jwksURI, jwks, secretRef, discovery or betterAuth"))
	}

	if out.Issuer == "" {
		c.add(field.Required(fp.Child("issuer"), "issuer is required unless the betterAuth preset supplies it"))
	} else if len(out.Issuer) > 1024 {
		c.add(field.TooLong(fp.Child("issuer"), "", 1024))
	}
	if in.Discovery && out.Issuer != "" {
		c.checkURL(fp.Child("issuer"), out.Issuer)
	}
	for i, a := range in.Audiences {
		if a == "" {
			c.add(field.Required(fp.Child("audiences").Index(i), "audience must not be empty"))
		}
	}

	out.Algorithms = c.algorithms(in.Algorithms, in.SecretRef != nil, in.BetterAuth != nil, fp.Child("algorithms"))

	out.ClockSkew = DefaultClockSkew
	if in.ClockSkew != "" {
		if d, ok := c.duration(fp.Child("clockSkew"), in.ClockSkew); ok {
			if d < 0 || d > MaxClockSkew {
				c.add(field.Invalid(fp.Child("clockSkew"), in.ClockSkew, "clockSkew must be between 0s and 5m"))
			}
			out.ClockSkew = d
		}
	}

	out.TokenFrom = c.tokenSources(in.TokenFrom, fp.Child("tokenFrom"))
	out.ForwardClaims = c.forwardClaims(in.ForwardClaims, fp.Child("forwardClaims"))
	return out
}

// checkURL reports whether raw is an absolute http(s) URL with a host.
func (c *compiler) checkURL(fp *field.Path, raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(raw) > 2048 {
		c.add(field.Invalid(fp, raw, "must be an absolute http or https URL"))
		return false
	}
	return true
}

var asymmetricAlgorithms = []string{"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

func (c *compiler) algorithms(in []string, secret, betterAuth bool, fp *field.Path) []string {
	if len(in) == 0 {
		switch {
		case secret:
			return []string{"HS256"}
		case betterAuth:
			return []string{"EdDSA"}
		default:
			return asymmetricAlgorithms
		}
	}
	var out []string
	seen := map[string]bool{}
	for i, a := range in {
		canon := a
		if a == "Ed25519" {
			canon = "EdDSA"
		}
		hmac := strings.HasPrefix(canon, "HS")
		switch {
		case !isKnownAlgorithm(canon):
			c.add(field.NotSupported(fp.Index(i), a, append([]string{"Ed25519", "HS256", "HS384", "HS512"}, asymmetricAlgorithms...)))
			continue
		case hmac && !secret:
			c.add(field.Invalid(fp.Index(i), a, "HS256/384/512 are only allowed with secretRef"))
			continue
		case !hmac && secret:
			c.add(field.Invalid(fp.Index(i), a, "secretRef allows only HS256/384/512"))
			continue
		}
		if !seen[canon] {
			seen[canon] = true
			out = append(out, canon)
		}
	}
	return out
}

func isKnownAlgorithm(a string) bool {
	switch a {
	case "HS256", "HS384", "HS512":
		return true
	}
	for _, k := range asymmetricAlgorithms {
		if a == k {
			return true
		}
	}
	return false
}

func (c *compiler) tokenSources(in []v1alpha1.TokenSource, fp *field.Path) []TokenSource {
	if len(in) == 0 {
		return []TokenSource{{Header: "authorization", Prefix: "Bearer "}}
	}
	out := make([]TokenSource, 0, len(in))
	for i, s := range in {
		ip := fp.Index(i)
		n := 0
		if s.Header != "" {
			n++
			if !headerNamePattern.MatchString(s.Header) {
				c.add(field.Invalid(ip.Child("header"), s.Header, "must be an HTTP header name"))
			}
		}
		if s.Cookie != "" {
			n++
			if !headerNamePattern.MatchString(s.Cookie) {
				c.add(field.Invalid(ip.Child("cookie"), s.Cookie, "must be a cookie name"))
			}
		}
		if s.Query != "" {
			n++
			if !queryNamePattern.MatchString(s.Query) {
				c.add(field.Invalid(ip.Child("query"), s.Query, "must be a query parameter name"))
			}
		}
		if n != 1 {
			c.add(field.Invalid(ip, "", "exactly one of header, cookie or query must be set"))
		}
		if s.Prefix != "" && s.Header == "" {
			c.add(field.Invalid(ip.Child("prefix"), s.Prefix, "prefix is only allowed with header"))
		}
		out = append(out, TokenSource{Header: strings.ToLower(s.Header), Prefix: s.Prefix, Cookie: s.Cookie, Query: s.Query})
	}
	return out
}

func (c *compiler) forwardClaims(in map[string]string, fp *field.Path) []ForwardClaim {
	out := make([]ForwardClaim, 0, len(in))
	seen := map[string]string{}
	for header, claim := range in {
		hp := fp.Key(header)
		lower := strings.ToLower(header)
		switch {
		case !headerNamePattern.MatchString(header):
			c.add(field.Invalid(hp, header, "must be an HTTP header name"))
		case reservedHeaders[lower] || strings.HasPrefix(lower, ":"):
			c.add(field.Forbidden(hp, fmt.Sprintf("header %q cannot be set from a claim", header)))
		case seen[lower] != "":
			c.add(field.Duplicate(hp, header))
		}
		if claim == "" || !claimNamePattern.MatchString(claim) {
			c.add(field.Invalid(hp, claim, "must name a claim ([A-Za-z0-9_.:/-]+)"))
		}
		seen[lower] = header
		out = append(out, ForwardClaim{Header: lower, Claim: claim})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Header < out[j].Header })
	return out
}

func (c *compiler) rule(in *v1alpha1.Rule, fp *field.Path, p *Policy, policyLimits map[string]bool, prefixOK bool) Rule {
	r := Rule{Name: in.Name, Anonymous: in.Anonymous}
	if !namePattern.MatchString(in.Name) || len(in.Name) > 63 {
		c.add(field.Invalid(fp.Child("name"), in.Name, "must be 1-63 characters of [-_.a-zA-Z0-9], starting and ending with a letter or digit"))
	}
	seenMethods := map[string]bool{}
	for i, m := range in.Methods {
		if !httpMethods[m] {
			c.add(field.NotSupported(fp.Child("methods").Index(i), m, []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}))
			continue
		}
		if !seenMethods[m] {
			seenMethods[m] = true
			r.Methods = append(r.Methods, m)
		}
	}

	if in.Path != "" {
		t, err := ParseTemplate(in.Path)
		if err != nil {
			c.add(field.Invalid(fp.Child("path"), in.Path, err.Error()))
		} else {
			r.Path = t
			if prefixOK && !templateUnderPrefix(t, p.PathPrefix) {
				c.add(field.Invalid(fp.Child("path"), in.Path, fmt.Sprintf("can never match: it is not under the policy's pathPrefix %q", p.PathPrefix)))
			}
		}
	}

	if in.Owner != nil {
		op := fp.Child("owner")
		if in.Anonymous {
			c.add(field.Forbidden(op, "an anonymous rule cannot have an owner"))
		}
		r.Owner = c.owner(in.Owner, op, in.Path, r.Path)
	}

	r.Limits = c.limits(in.Limits, fp.Child("limits"), p.Key()+":"+in.Name+":", policyLimits, in.Anonymous)
	return r
}

// templateUnderPrefix reports whether some path matching t can be under
// prefix, by comparing the template's leading literal segments.
func templateUnderPrefix(t *Template, prefix string) bool {
	want := strings.Split(strings.Trim(prefix, "/"), "/")
	if prefix == "/" {
		return true
	}
	for i, w := range want {
		if i >= len(t.segs) {
			return t.tail
		}
		s := t.segs[i]
		if s.kind != literalSegment {
			continue
		}
		if s.value != w {
			return false
		}
	}
	return true
}

func (c *compiler) owner(in *v1alpha1.Owner, fp *field.Path, rawPath string, t *Template) *Owner {
	o := &Owner{Claim: in.Claim}
	if o.Claim == "" {
		o.Claim = "sub"
	}
	n := 0
	if in.Path != "" {
		n++
		o.Source, o.Name = OwnerFromPath, in.Path
		found := false
		if t != nil {
			for i, v := range t.Vars() {
				if v == in.Path {
					o.PathIndex, found = i, true
				}
			}
		}
		if !found && (t != nil || rawPath == "") {
			c.add(field.Invalid(fp.Child("path"), in.Path, fmt.Sprintf("must name a variable that the rule's path %q declares", rawPath)))
		}
	}
	if in.Query != "" {
		n++
		o.Source, o.Name = OwnerFromQuery, in.Query
	}
	if in.Header != "" {
		n++
		o.Source, o.Name = OwnerFromHeader, strings.ToLower(in.Header)
		if !headerNamePattern.MatchString(in.Header) {
			c.add(field.Invalid(fp.Child("header"), in.Header, "must be an HTTP header name"))
		}
	}
	if n != 1 {
		c.add(field.Invalid(fp, "", "exactly one of path, query or header must be set"))
	}
	if in.AllowIf != nil {
		ap := fp.Child("allowIf")
		if in.AllowIf.Claim == "" {
			c.add(field.Required(ap.Child("claim"), "claim is required"))
		}
		if len(in.AllowIf.Values) == 0 {
			c.add(field.Required(ap.Child("values"), "at least one value is required"))
		}
		o.AllowIf = &ClaimValues{Claim: in.AllowIf.Claim, Values: in.AllowIf.Values}
	}
	return o
}

// limits compiles a list of limits; reserved holds names that the list may
// not reuse (the policy's limits, for a rule's list).
func (c *compiler) limits(in []v1alpha1.Limit, fp *field.Path, counterPrefix string, reserved map[string]bool, anonymous bool) []Limit {
	out := make([]Limit, 0, len(in))
	local := map[string]bool{}
	for i := range in {
		l := &in[i]
		lp := fp.Index(i)
		if !namePattern.MatchString(l.Name) || len(l.Name) > 63 {
			c.add(field.Invalid(lp.Child("name"), l.Name, "must be 1-63 characters of [-_.a-zA-Z0-9], starting and ending with a letter or digit"))
		}
		if local[l.Name] || reserved[l.Name] {
			c.add(field.Duplicate(lp.Child("name"), l.Name))
		}
		local[l.Name] = true
		cl := Limit{Name: l.Name, Requests: l.Requests, CounterPrefix: counterPrefix + l.Name + ":"}
		c.requests(lp.Child("requests"), l.Requests)
		cl.Period = c.period(lp.Child("period"), l.Period)
		cl.By, cl.ByName = c.by(lp.Child("by"), l.By)
		if anonymous && cl.By.NeedsIdentity() {
			c.add(field.Invalid(lp.Child("by"), l.By, "an anonymous rule has no token: count it by ip or header"))
		}
		if l.Tiers != nil {
			tp := lp.Child("tiers")
			if anonymous {
				c.add(field.Forbidden(tp, "an anonymous rule has no token to choose a tier from"))
			}
			if l.Tiers.Claim == "" {
				c.add(field.Required(tp.Child("claim"), "claim is required"))
			}
			if len(l.Tiers.Values) == 0 {
				c.add(field.Required(tp.Child("values"), "at least one tier is required"))
			}
			cl.Tiers = &Tiers{Claim: l.Tiers.Claim, Values: make(map[string]Tier, len(l.Tiers.Values))}
			for value, t := range l.Tiers.Values {
				vp := tp.Child("values").Key(value)
				c.requests(vp.Child("requests"), t.Requests)
				tier := Tier{Requests: t.Requests, Period: cl.Period}
				if t.Period != "" {
					tier.Period = c.period(vp.Child("period"), t.Period)
				}
				cl.Tiers.Values[value] = tier
			}
		}
		out = append(out, cl)
	}
	return out
}

func (c *compiler) requests(fp *field.Path, n int64) {
	if n < 1 || n > MaxRequests {
		c.add(field.Invalid(fp, n, "requests must be between 1 and 1000000000"))
	}
}

func (c *compiler) period(fp *field.Path, s string) time.Duration {
	d, ok := c.duration(fp, s)
	if ok && (d < MinPeriod || d > MaxPeriod) {
		c.add(field.Invalid(fp, s, "period must be between 1s and 744h"))
	}
	return d
}

func (c *compiler) duration(fp *field.Path, s string) (time.Duration, bool) {
	if s == "" {
		c.add(field.Required(fp, "a duration such as 30s, 15m or 1h is required"))
		return 0, false
	}
	if !durationPattern.MatchString(s) {
		c.add(field.Invalid(fp, s, "must be a duration such as 30s, 15m or 1h"))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		c.add(field.Invalid(fp, s, "must be a duration such as 30s, 15m or 1h"))
		return 0, false
	}
	return d, true
}

func (c *compiler) by(fp *field.Path, s string) (KeyKind, string) {
	switch {
	case s == "user":
		return ByUser, ""
	case s == "ip":
		return ByIP, ""
	case s == "user+ip":
		return ByUserIP, ""
	case strings.HasPrefix(s, "claim:") && claimNamePattern.MatchString(s[len("claim:"):]):
		return ByClaim, s[len("claim:"):]
	case strings.HasPrefix(s, "header:") && headerNamePattern.MatchString(s[len("header:"):]):
		return ByHeader, strings.ToLower(s[len("header:"):])
	}
	c.add(field.NotSupported(fp, s, []string{"user", "ip", "user+ip", "claim:<name>", "header:<name>"}))
	return 0, ""
}
