package token

import (
	"crypto"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Clock skew bounds of a Config.
const (
	DefaultClockSkew = 30 * time.Second
	MaxClockSkew     = 5 * time.Minute
)

// MaxURLLength bounds a key or issuer URL.
const MaxURLLength = 2048

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

// Errors of the settings validator. Each wraps ErrInvalidConfig.
var (
	ErrInvalidConfig = errors.New("token: invalid settings")
	// ErrUnknownAlgorithm: not one of AlgorithmNames ("none" included).
	ErrUnknownAlgorithm = fmt.Errorf("%w: unknown algorithm", ErrInvalidConfig)
	// ErrHMACWithoutSecret: HS256/384/512 with a key set rather than a
	// shared secret.
	ErrHMACWithoutSecret = fmt.Errorf("%w: HS256/384/512 are only allowed with secretRef", ErrInvalidConfig)
	// ErrSecretWithoutHMAC: an asymmetric algorithm with a shared secret.
	ErrSecretWithoutHMAC = fmt.Errorf("%w: secretRef allows only HS256/384/512", ErrInvalidConfig)
)

// A Family is the kind of key an algorithm needs.
type Family uint8

// Algorithm families.
const (
	FamilyHMAC Family = iota + 1
	FamilyRSA
	FamilyEC
	FamilyEdDSA
)

// An Algorithm is one signature algorithm tollgate accepts.
type Algorithm struct {
	Family Family
	Curve  string      // for FamilyEC: the JWK crv the key must have
	Hash   crypto.Hash // digest, or HMAC hash; 0 for EdDSA
	PSS    bool        // RSA PSS rather than PKCS #1 v1.5
}

// algorithms is the closed table of algorithms tollgate accepts, the only
// one: pkg/jwt verifies with it and the policy compiler checks policies
// against it. It is read-only after package initialisation.
var algorithms = map[string]Algorithm{
	"HS256": {Family: FamilyHMAC, Hash: crypto.SHA256}, "HS384": {Family: FamilyHMAC, Hash: crypto.SHA384}, "HS512": {Family: FamilyHMAC, Hash: crypto.SHA512},
	"RS256": {Family: FamilyRSA, Hash: crypto.SHA256}, "RS384": {Family: FamilyRSA, Hash: crypto.SHA384}, "RS512": {Family: FamilyRSA, Hash: crypto.SHA512},
	"PS256": {Family: FamilyRSA, Hash: crypto.SHA256, PSS: true}, "PS384": {Family: FamilyRSA, Hash: crypto.SHA384, PSS: true}, "PS512": {Family: FamilyRSA, Hash: crypto.SHA512, PSS: true},
	"ES256": {Family: FamilyEC, Curve: "P-256", Hash: crypto.SHA256},
	"ES384": {Family: FamilyEC, Curve: "P-384", Hash: crypto.SHA384},
	"ES512": {Family: FamilyEC, Curve: "P-521", Hash: crypto.SHA512},
	"EdDSA": {Family: FamilyEdDSA},
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

// AlgorithmNames returns the canonical names of every algorithm accepted,
// in a fixed order.
func AlgorithmNames() []string { return slices.Clone(algorithmNames) }

// DefaultAlgorithms returns the allow-list of a Config without Algorithms:
// HS256 with a shared secret, else every asymmetric algorithm.
func DefaultAlgorithms(secret bool) []string {
	if secret {
		return []string{"HS256"}
	}
	return slices.Clone(defaultAsymmetric)
}

// LookupAlgorithm returns what verifying with a canonical algorithm needs.
func LookupAlgorithm(name string) (Algorithm, bool) {
	a, ok := algorithms[name]
	return a, ok
}

// CanonicalAlgorithm returns the canonical name of a known algorithm
// ("Ed25519", RFC 9864's name, is "EdDSA"), or "". It is also applied to
// token headers and JWK "alg" members.
func CanonicalAlgorithm(name string) string {
	if name == "Ed25519" {
		return "EdDSA"
	}
	if _, ok := algorithms[name]; ok {
		return name
	}
	return ""
}

// ParseAlgorithm maps a policy's algorithm name to its canonical name and
// rejects "none" in any spelling and every unknown name.
func ParseAlgorithm(name string) (string, error) {
	if strings.EqualFold(name, "none") {
		return "", fmt.Errorf("%w %q: never allowed", ErrUnknownAlgorithm, name)
	}
	if c := CanonicalAlgorithm(name); c != "" {
		return c, nil
	}
	return "", fmt.Errorf("%w %q", ErrUnknownAlgorithm, name)
}

// CheckAlgorithm returns the canonical name of an algorithm a policy
// allows, for a key source that is (secret) or is not a shared secret.
func CheckAlgorithm(name string, secret bool) (string, error) {
	canon, err := ParseAlgorithm(name)
	if err != nil {
		return "", err
	}
	switch hmac := algorithms[canon].Family == FamilyHMAC; {
	case hmac && !secret:
		return "", fmt.Errorf("%w (%s)", ErrHMACWithoutSecret, canon)
	case !hmac && secret:
		return "", fmt.Errorf("%w (%s)", ErrSecretWithoutHMAC, canon)
	}
	return canon, nil
}

// CheckClockSkew reports a clock skew outside 0..MaxClockSkew.
func CheckClockSkew(d time.Duration) error {
	if d < 0 || d > MaxClockSkew {
		return fmt.Errorf("%w: clockSkew must be between 0s and %s", ErrInvalidConfig, "5m")
	}
	return nil
}

// CheckURL reports a key or issuer URL that is not an absolute http or
// https URL with a host, or is longer than MaxURLLength.
func CheckURL(s string) error {
	if len(s) > MaxURLLength {
		return fmt.Errorf("%w: URL longer than %d characters", ErrInvalidConfig, MaxURLLength)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%w: must be an absolute http or https URL", ErrInvalidConfig)
	}
	return nil
}

// Validate checks c and returns the canonical allow-list of algorithms.
// It is the one validator of jwt settings: the policy compiler checks each
// field with the same functions (CheckAlgorithm, CheckClockSkew, CheckURL)
// to name the field at fault.
func (c *Config) Validate() ([]string, error) {
	if c.Issuer == "" {
		return nil, fmt.Errorf("%w: issuer is required", ErrInvalidConfig)
	}
	sources := 0
	if c.JWKSURI != "" {
		sources++
		if err := CheckURL(c.JWKSURI); err != nil {
			return nil, fmt.Errorf("jwksURI: %w", err)
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
		if err := CheckURL(c.Issuer); err != nil {
			return nil, fmt.Errorf("discovery needs an http(s) issuer: %w", err)
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("%w: exactly one of jwksURI, jwks, secretRef, discovery is required (got %d)", ErrInvalidConfig, sources)
	}
	if err := CheckClockSkew(c.ClockSkew); err != nil {
		return nil, err
	}
	algs := c.Algorithms
	if len(algs) == 0 {
		algs = DefaultAlgorithms(c.Secret != nil)
	}
	out := make([]string, 0, len(algs))
	for _, a := range algs {
		canon, err := CheckAlgorithm(a, c.Secret != nil)
		if err != nil {
			return nil, err
		}
		out = append(out, canon)
	}
	return out, nil
}
