package compiler

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/token"
)

func (c *compiler) jwt(in *v1alpha1.JWT, fp *field.Path) *policy.JWT {
	out := &policy.JWT{
		Config: token.Config{
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
		out.Secret = &token.SecretRef{Namespace: c.ns, Name: in.SecretRef.Name, Key: in.SecretRef.Key}
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

	out.ClockSkew = token.DefaultClockSkew
	if in.ClockSkew != "" {
		if d, ok := c.duration(fp.Child("clockSkew"), in.ClockSkew); ok {
			if err := token.CheckClockSkew(d); err != nil {
				c.add(field.Invalid(fp.Child("clockSkew"), in.ClockSkew, settingProblem(err)))
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
func claimsUsed(p *policy.Policy) []string {
	var names []string
	limits := func(ls []policy.Limit) {
		for _, l := range ls {
			if l.By == policy.ByClaim {
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

// checkURL reports whether raw is a usable key or issuer URL
// (token.CheckURL).
func (c *compiler) checkURL(fp *field.Path, raw string) bool {
	if err := token.CheckURL(raw); err != nil {
		c.add(field.Invalid(fp, raw, settingProblem(err)))
		return false
	}
	return true
}

// settingProblem is the message of a token settings error without its
// package prefix: the field path says where the problem is.
func settingProblem(err error) string {
	return strings.TrimPrefix(err.Error(), token.ErrInvalidConfig.Error()+": ")
}

// algorithms checks the allowed algorithms with pkg/token's validator (the
// one table of algorithms) and returns their canonical names.
func (c *compiler) algorithms(in []string, secret, betterAuth bool, fp *field.Path) []string {
	if len(in) == 0 {
		if betterAuth && !secret {
			return []string{"EdDSA"}
		}
		return token.DefaultAlgorithms(secret)
	}
	var out []string
	for i, a := range in {
		canon, err := token.CheckAlgorithm(a, secret)
		switch {
		case errors.Is(err, token.ErrUnknownAlgorithm):
			c.add(field.NotSupported(fp.Index(i), a, append([]string{"Ed25519"}, token.AlgorithmNames()...)))
		case errors.Is(err, token.ErrHMACWithoutSecret):
			c.add(field.Invalid(fp.Index(i), a, "HS256/384/512 are only allowed with secretRef"))
		case errors.Is(err, token.ErrSecretWithoutHMAC):
			c.add(field.Invalid(fp.Index(i), a, "secretRef allows only HS256/384/512"))
		case err != nil:
			c.add(field.Invalid(fp.Index(i), a, settingProblem(err)))
		case !slices.Contains(out, canon):
			out = append(out, canon)
		}
	}
	return out
}

func (c *compiler) tokenSources(in []v1alpha1.TokenSource, fp *field.Path) []policy.TokenSource {
	if len(in) == 0 {
		return []policy.TokenSource{{Header: "authorization", Prefix: "Bearer "}}
	}
	out := make([]policy.TokenSource, 0, len(in))
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
		out = append(out, policy.TokenSource{Header: strings.ToLower(s.Header), Prefix: s.Prefix, Cookie: s.Cookie, Query: s.Query})
	}
	return out
}

func (c *compiler) forwardClaims(in map[string]string, fp *field.Path) []policy.ForwardClaim {
	out := make([]policy.ForwardClaim, 0, len(in))
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
		out = append(out, policy.ForwardClaim{Header: lower, Claim: claim})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Header < out[j].Header })
	return out
}
