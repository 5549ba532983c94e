package jwt

import (
	"crypto"
	_ "crypto/sha256" // hashes of the algorithms table
	_ "crypto/sha512"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// MaxClockSkew is the largest ClockSkew a Config may carry.
const MaxClockSkew = 5 * time.Minute

// Config is the compiled, pure-data form of an AuthPolicy's jwt block. The
// policy compiler fills it: the betterAuth preset is already resolved into
// Issuer, Audiences, JWKSURI and Algorithms [EdDSA], and discovery into
// Discovery=true. Exactly one of JWKSURI, InlineJWKS, Secret and Discovery
// must be set.
type Config struct {
	Issuer     string        // required; exact match of "iss"
	Audiences  []string      // token aud must contain one; empty = unchecked
	JWKSURI    string        // remote JWKS
	InlineJWKS string        // inline JWKS document
	Secret     *SecretRef    // HS256/384/512 shared secret
	Discovery  bool          // jwks_uri from Issuer + "/.well-known/openid-configuration"
	Algorithms []string      // canonical names; empty = all asymmetric, or HS256 with Secret
	ClockSkew  time.Duration // tolerance for exp, nbf and iat; 0..MaxClockSkew
	// Claims are the claims decisions read besides sub and iss: forwarded
	// claims, owner and allowIf claims, tier claims, limits by claim. A
	// verified Identity (and the verified-token cache) keeps only these;
	// any other claim reads as absent.
	Claims []string
}

// SecretRef names one key of a Kubernetes Secret.
type SecretRef struct{ Namespace, Name, Key string }

// String returns "namespace/name/key".
func (r SecretRef) String() string { return r.Namespace + "/" + r.Name + "/" + r.Key }

// algFamily groups algorithms by the kind of key they need.
type algFamily uint8

const (
	famHMAC algFamily = iota + 1
	famRSA
	famEC
	famEdDSA
)

type algInfo struct {
	family algFamily
	curve  string      // for famEC: the JWK crv the key must have
	hash   crypto.Hash // digest, or HMAC hash; 0 for EdDSA
	pss    bool        // RSA PSS rather than PKCS #1 v1.5
}

// algorithms is the closed table of algorithms tollgate accepts. It is
// read-only after package initialisation.
var algorithms = map[string]algInfo{
	"HS256": {family: famHMAC, hash: crypto.SHA256}, "HS384": {family: famHMAC, hash: crypto.SHA384}, "HS512": {family: famHMAC, hash: crypto.SHA512},
	"RS256": {family: famRSA, hash: crypto.SHA256}, "RS384": {family: famRSA, hash: crypto.SHA384}, "RS512": {family: famRSA, hash: crypto.SHA512},
	"PS256": {family: famRSA, hash: crypto.SHA256, pss: true}, "PS384": {family: famRSA, hash: crypto.SHA384, pss: true}, "PS512": {family: famRSA, hash: crypto.SHA512, pss: true},
	"ES256": {family: famEC, curve: "P-256", hash: crypto.SHA256},
	"ES384": {family: famEC, curve: "P-384", hash: crypto.SHA384},
	"ES512": {family: famEC, curve: "P-521", hash: crypto.SHA512},
	"EdDSA": {family: famEdDSA},
}

// algorithmNames lists the keys of algorithms in a fixed order.
var algorithmNames = []string{
	"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA",
}

// defaultAsymmetric is the default allow-list for key-set sources.
var defaultAsymmetric = []string{
	"EdDSA", "ES256", "ES384", "ES512",
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
}

// ParseAlgorithm maps a policy's algorithm name to its canonical JOSE name
// ("Ed25519", RFC 9864's name, becomes "EdDSA") and rejects "none" in any
// spelling and every unknown name.
func ParseAlgorithm(name string) (string, error) {
	if strings.EqualFold(name, "none") {
		return "", fmt.Errorf("%w: algorithm %q is never allowed", ErrInvalidConfig, name)
	}
	if c := canonicalAlg(name); c != "" {
		return c, nil
	}
	return "", fmt.Errorf("%w: unknown algorithm %q", ErrInvalidConfig, name)
}

// canonicalAlg returns the canonical name of a known algorithm, or "".
// It is also applied to token headers and JWK "alg" members.
func canonicalAlg(name string) string {
	if name == "Ed25519" {
		return "EdDSA"
	}
	if _, ok := algorithms[name]; ok {
		return name
	}
	return ""
}

// validate checks c and returns the canonical allow-list.
func (c *Config) validate() ([]string, error) {
	if c.Issuer == "" {
		return nil, fmt.Errorf("%w: issuer is required", ErrInvalidConfig)
	}
	sources := 0
	if c.JWKSURI != "" {
		sources++
		if err := checkHTTPURL(c.JWKSURI); err != nil {
			return nil, fmt.Errorf("%w: jwksURI: %w", ErrInvalidConfig, err)
		}
	}
	if c.InlineJWKS != "" {
		sources++
	}
	if c.Secret != nil {
		sources++
		if c.Secret.Name == "" || c.Secret.Key == "" {
			return nil, fmt.Errorf("%w: secretRef needs name and key", ErrInvalidConfig)
		}
	}
	if c.Discovery {
		sources++
		if err := checkHTTPURL(c.Issuer); err != nil {
			return nil, fmt.Errorf("%w: discovery needs an http(s) issuer: %w", ErrInvalidConfig, err)
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("%w: exactly one of jwksURI, jwks, secretRef, discovery is required (got %d)", ErrInvalidConfig, sources)
	}
	if c.ClockSkew < 0 || c.ClockSkew > MaxClockSkew {
		return nil, fmt.Errorf("%w: clockSkew %s outside 0..%s", ErrInvalidConfig, c.ClockSkew, MaxClockSkew)
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		if c.Secret != nil {
			algs = []string{"HS256"}
		} else {
			algs = defaultAsymmetric
		}
	}
	out := make([]string, 0, len(algs))
	for _, a := range algs {
		canon, err := ParseAlgorithm(a)
		if err != nil {
			return nil, err
		}
		hmac := algorithms[canon].family == famHMAC
		if hmac != (c.Secret != nil) {
			if hmac {
				return nil, fmt.Errorf("%w: %s needs secretRef", ErrInvalidConfig, canon)
			}
			return nil, fmt.Errorf("%w: %s cannot be used with secretRef", ErrInvalidConfig, canon)
		}
		out = append(out, canon)
	}
	return out, nil
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("parse url: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("url %q is not http(s)", s)
	}
	return nil
}

// fingerprint is a canonical encoding of everything that decides whether a
// token verifies; equal fingerprints share verified-token cache entries.
func (c *Config) fingerprint(algs []string) string {
	var b strings.Builder
	w := func(s string) { fmt.Fprintf(&b, "%d:%s|", len(s), s) }
	w(c.Issuer)
	b.WriteString("aud|")
	for _, a := range c.Audiences {
		w(a)
	}
	w(c.JWKSURI)
	w(c.InlineJWKS)
	if c.Secret != nil {
		w(c.Secret.String())
	} else {
		w("")
	}
	fmt.Fprintf(&b, "disc=%t|skew=%d|alg|", c.Discovery, c.ClockSkew)
	for _, a := range algs {
		w(a)
	}
	b.WriteString("claims|")
	for _, n := range newClaimSchema(c.Claims).names {
		w(n)
	}
	return b.String()
}
