package policy

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

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

// claimsUsed lists, sorted and once each, the claims p's decisions read:
// forwarded claims, owner and allowIf claims, tier claims and limits by
// claim. The verifier keeps only these (and sub and iss) of each token.
func claimsUsed(p *Policy) []string {
	var names []string
	limits := func(ls []Limit) {
		for _, l := range ls {
			if l.By == ByClaim {
				names = append(names, l.ByName)
			}
			if l.Tiers != nil {
				names = append(names, l.Tiers.Claim)
			}
		}
	}
	for _, fc := range p.JWT.ForwardClaims {
		names = append(names, fc.Claim)
	}
	limits(p.Limits)
	for _, r := range p.Rules {
		if r.Owner != nil {
			names = append(names, r.Owner.Claim)
			if r.Owner.AllowIf != nil {
				names = append(names, r.Owner.AllowIf.Claim)
			}
		}
		limits(r.Limits)
	}
	sort.Strings(names)
	return slices.Compact(names)
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
