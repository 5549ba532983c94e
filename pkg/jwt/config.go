package jwt

import (
	_ "crypto/sha256" // hashes of the algorithms table
	_ "crypto/sha512"
	"fmt"
	"strings"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// Config is the compiled, pure-data form of an AuthPolicy's jwt block
// (token.Config, shared with the decision core and the policy compiler).
type Config = token.Config

// SecretRef names one key of a Kubernetes Secret.
type SecretRef = token.SecretRef

// MaxClockSkew is the largest ClockSkew a Config may carry.
const MaxClockSkew = token.MaxClockSkew

// ParseAlgorithm maps a policy's algorithm name to its canonical JOSE name
// ("Ed25519", RFC 9864's name, becomes "EdDSA") and rejects "none" in any
// spelling and every unknown name (token.ParseAlgorithm).
func ParseAlgorithm(name string) (string, error) { return token.ParseAlgorithm(name) }

// algFamily groups algorithms by the kind of key they need.
type algFamily = token.Family

const (
	famHMAC  = token.FamilyHMAC
	famRSA   = token.FamilyRSA
	famEC    = token.FamilyEC
	famEdDSA = token.FamilyEdDSA
)

// algorithm returns the entry of a canonical algorithm name in the one
// table of algorithms (pkg/token); the zero Algorithm for others.
func algorithm(name string) token.Algorithm {
	a, _ := token.LookupAlgorithm(name)
	return a
}

// algorithmNames lists every algorithm in a fixed order.
var algorithmNames = token.AlgorithmNames()

// fingerprint is a canonical encoding of everything that decides whether a
// token verifies; equal fingerprints share verified-token cache entries.
func fingerprint(c *Config, algs []string) string {
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
	for _, n := range token.NewClaimSchema(c.Claims).Names() {
		w(n)
	}
	return b.String()
}
