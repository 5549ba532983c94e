package compiler

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/pathnorm"
	"github.com/tollgate-dev/tollgate/pkg/policy"
)

// Bounds applied by Compile (the jwt settings' bounds are pkg/token's).
const (
	MinPeriod   = time.Second
	MaxPeriod   = 744 * time.Hour
	MaxRequests = 1_000_000_000
	// MaxBurstRatio bounds a burst by its requests: a full burst refills
	// within MaxBurstRatio periods, at most 744,000 h, which the quota
	// stores count exactly (pkg/ratelimit's maxWindow).
	MaxBurstRatio  = 1000
	betterAuthJWKS = "/api/auth/jwks"
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
func Compile(ap *v1alpha1.AuthPolicy) (*policy.Policy, error) {
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

func (c *compiler) policy(spec *v1alpha1.AuthPolicySpec) *policy.Policy {
	p := policy.New(c.ns, c.name)

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
				p.Hosts = append(p.Hosts, policy.Host{Name: rest, Wildcard: true})
			} else {
				p.Hosts = append(p.Hosts, policy.Host{Name: h})
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

	p.Limits = c.limits(spec.Limits, specPath.Child("limits"), p.Key(), "", nil, false)
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
	if p.JWT != nil {
		p.JWT.Claims = claimsUsed(p)
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
	case strings.ContainsAny(prefix, "?#\\{}*"):
		return "must be a plain normalized path (no ?, #, \\, {, } or *)"
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "." || seg == ".." {
			return "must not contain dot segments"
		}
	}
	if norm, err := pathnorm.Normalize(prefix); err != nil || norm != prefix {
		return "must be a normalized path (requests are matched after normalization)"
	}
	return ""
}

func (c *compiler) rule(in *v1alpha1.Rule, fp *field.Path, p *policy.Policy, policyLimits map[string]bool, prefixOK bool) policy.Rule {
	r := policy.Rule{Name: in.Name, Anonymous: in.Anonymous}
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
		t, err := policy.ParseTemplate(in.Path)
		if err != nil {
			c.add(field.Invalid(fp.Child("path"), in.Path, err.Error()))
		} else {
			r.Path = t
			if prefixOK && !t.MayBeUnder(p.PathPrefix) {
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

	r.Limits = c.limits(in.Limits, fp.Child("limits"), p.Key(), in.Name, policyLimits, in.Anonymous)
	return r
}

func (c *compiler) owner(in *v1alpha1.Owner, fp *field.Path, rawPath string, t *policy.Template) *policy.Owner {
	o := &policy.Owner{Claim: in.Claim}
	if o.Claim == "" {
		o.Claim = "sub"
	}
	n := 0
	if in.Path != "" {
		n++
		o.Source, o.Name = policy.OwnerFromPath, in.Path
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
		o.Source, o.Name = policy.OwnerFromQuery, in.Query
	}
	if in.Header != "" {
		n++
		o.Source, o.Name = policy.OwnerFromHeader, strings.ToLower(in.Header)
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
		o.AllowIf = &policy.ClaimValues{Claim: in.AllowIf.Claim, Values: in.AllowIf.Values}
	}
	return o
}
