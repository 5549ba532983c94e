package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/tollgate-dev/tollgate/pkg/token"
)

// minRSABits is the smallest RSA modulus accepted in a key set.
const minRSABits = 2048

// minSecretLen is the smallest HMAC secret accepted (RFC 7518 §3.2 asks for
// at least the hash size; 32 bytes is the HS256 floor).
const minSecretLen = 32

// key is one verification key. Its identity (the pointer) is stable across
// JWKS refreshes as long as the key stays in the set, so verified-token cache
// entries can point at it and be invalidated when it leaves.
type key struct {
	kid     string
	alg     string    // canonical JWK "alg", "" when the JWK had none
	family  algFamily // which algorithms the key can verify
	curve   string    // EC curve (JWK crv)
	raw     any       // ed25519.PublicKey, *ecdsa.PublicKey, *rsa.PublicKey or []byte
	thumb   string    // identity across refreshes: kid + RFC 7638 thumbprint
	revoked atomic.Bool
}

// accepts reports whether k may verify a token whose header alg is alg.
// An asymmetric key never verifies an HMAC algorithm (and vice versa), and a
// JWK with an "alg" only verifies that algorithm.
func (k *key) accepts(alg string) bool {
	info := algorithm(alg)
	if info.Family != k.family {
		return false
	}
	if info.Family == famEC && info.Curve != k.curve {
		return false
	}
	return k.alg == "" || k.alg == alg
}

// keySet is an immutable set of keys. parseJWKS guarantees that no two of
// its keys share a kid and fit the same algorithm, so a token is checked
// against at most one key.
type keySet struct {
	byKid  map[string][]*key
	all    []*key
	anyKid bool // the one key is used whatever the token's kid (HS secrets)
}

func newKeySet(keys []*key) *keySet {
	s := &keySet{byKid: make(map[string][]*key, len(keys)), all: keys}
	for _, k := range keys {
		s.byKid[k.kid] = append(s.byKid[k.kid], k)
	}
	return s
}

// A pick is the outcome of choosing the key for a token.
type pick int

const (
	picked     pick = iota // key is the one key to check the token against
	noFit                  // keys exist for the kid, none fits the algorithm
	unknownKid             // the set has no key with the token's kid
	ambiguous              // the token names no kid and several keys fit
)

// pick returns the one key a token with this kid and canonical algorithm may
// be checked against. A token without kid is checked only when exactly one
// key of the set fits its algorithm: trying several would multiply the cost
// of every forged token, and which one signed would be a guess.
func (s *keySet) pick(kid string, hasKid bool, alg string) (*key, pick) {
	group := s.all
	if hasKid && !s.anyKid {
		group = s.byKid[kid]
		if len(group) == 0 {
			return nil, unknownKid
		}
	}
	var found *key
	for _, k := range group {
		if k.accepts(alg) {
			if found != nil {
				return nil, ambiguous
			}
			found = k
		}
	}
	if found == nil {
		return nil, noFit
	}
	return found, picked
}

// checkUnique refuses a set in which one kid (or the absence of one) names
// two keys for the same algorithm: a token with that kid would have to be
// tried against both, and an attacker publishing many such keys would
// multiply the cost of every forged token.
func checkUnique(keys []*key) error {
	for i, a := range keys {
		for _, b := range keys[:i] {
			if a.kid != b.kid {
				continue
			}
			for _, alg := range algorithmNames {
				if a.accepts(alg) && b.accepts(alg) {
					if a.kid == "" {
						return fmt.Errorf("%w: two keys without kid fit %s", ErrDuplicateKid, alg)
					}
					return fmt.Errorf("%w: kid %q names two keys for %s", ErrDuplicateKid, shorten(a.kid), alg)
				}
			}
		}
	}
	return nil
}

// shorten cuts a key-set-supplied string for an error message.
func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// skippedKey describes a JWKS member that was left out.
type skippedKey struct {
	Kid    string
	Reason string
}

// MaxKeys is the most keys a JWKS may hold; a larger set is refused.
const MaxKeys = 64

// parseJWKS parses a JWKS document. Members with an unknown or unsupported
// kty, curve or alg, symmetric members, weak RSA keys and unparsable members
// are skipped and reported, never fatal. An unparsable document, one with
// more than MaxKeys members, and one where a kid names two keys for the same
// algorithm (ErrDuplicateKid) are errors.
func parseJWKS(doc []byte) ([]*key, []skippedKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, nil, fmt.Errorf("decode jwks: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New("decode jwks: no \"keys\" member")
	}
	if len(set.Keys) > MaxKeys {
		return nil, nil, fmt.Errorf("%w: %d keys, at most %d are accepted", ErrTooManyKeys, len(set.Keys), MaxKeys)
	}
	var keys []*key
	var skipped []skippedKey
	for _, rawKey := range set.Keys {
		k, err := parseJWK(rawKey)
		if err != nil {
			var hdr struct {
				Kid string `json:"kid"`
			}
			_ = json.Unmarshal(rawKey, &hdr)
			skipped = append(skipped, skippedKey{Kid: hdr.Kid, Reason: err.Error()})
			continue
		}
		keys = append(keys, k)
	}
	if err := checkUnique(keys); err != nil {
		return nil, skipped, err
	}
	return keys, skipped, nil
}

// parseJWK turns one JWK into a public verification key.
func parseJWK(raw []byte) (*key, error) {
	var hdr struct {
		Kty string `json:"kty"`
		Alg string `json:"alg"`
		Use string `json:"use"`
		Crv string `json:"crv"`
	}
	if err := json.Unmarshal(raw, &hdr); err != nil {
		return nil, fmt.Errorf("decode jwk: %w", err)
	}
	if hdr.Use != "" && hdr.Use != "sig" {
		return nil, fmt.Errorf("use %q is not sig", hdr.Use)
	}
	var alg string
	if hdr.Alg != "" {
		if alg = token.CanonicalAlgorithm(hdr.Alg); alg == "" {
			return nil, fmt.Errorf("unsupported alg %q", hdr.Alg)
		}
	}
	var fam algFamily
	switch hdr.Kty {
	case "OKP":
		if hdr.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", hdr.Crv)
		}
		fam = famEdDSA
	case "EC":
		fam = famEC
	case "RSA":
		fam = famRSA
	default:
		// "oct" included: shared secrets come only from a secretRef, so an
		// HMAC key can never be smuggled in through a JWKS.
		return nil, fmt.Errorf("unsupported kty %q", hdr.Kty)
	}
	if alg != "" && algorithm(alg).Family != fam {
		return nil, fmt.Errorf("alg %q does not fit kty %q", alg, hdr.Kty)
	}
	parsed, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("parse jwk: %w", err)
	}
	pub, err := parsed.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	var rawKey any
	if err := pub.Raw(&rawKey); err != nil {
		return nil, fmt.Errorf("raw key: %w", err)
	}
	k := &key{kid: pub.KeyID(), alg: alg, family: fam}
	switch rk := rawKey.(type) {
	case ed25519.PublicKey:
		if len(rk) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 key of %d bytes", len(rk))
		}
		k.raw = rk
	case *ecdsa.PublicKey:
		k.curve = hdr.Crv
		if k.curve != "P-256" && k.curve != "P-384" && k.curve != "P-521" {
			return nil, fmt.Errorf("unsupported EC curve %q", hdr.Crv)
		}
		if alg != "" && algorithm(alg).Curve != k.curve {
			return nil, fmt.Errorf("alg %q does not fit curve %q", alg, k.curve)
		}
		k.raw = rk
	case *rsa.PublicKey:
		if rk.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("rsa key of %d bits is too small", rk.N.BitLen())
		}
		k.raw = rk
	default:
		return nil, fmt.Errorf("unsupported key type %T", rawKey)
	}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("thumbprint: %w", err)
	}
	k.thumb = k.kid + "\x00" + k.alg + "\x00" + string(tp)
	return k, nil
}

// carryOver reuses the *key of old for every key of next with the same
// identity, so cache entries stay valid across a refresh, and revokes the
// keys of old that left. It returns the set to publish and whether any key
// was revoked.
func carryOver(old *keySet, next []*key) (*keySet, bool) {
	if old == nil {
		return newKeySet(next), false
	}
	prev := make(map[string]*key, len(old.all))
	for _, k := range old.all {
		prev[k.thumb] = k
	}
	kept := make(map[*key]bool, len(next))
	for i, k := range next {
		if p, ok := prev[k.thumb]; ok {
			next[i] = p
			kept[p] = true
		}
	}
	revoked := false
	for _, k := range old.all {
		if !kept[k] {
			k.revoked.Store(true)
			revoked = true
		}
	}
	return newKeySet(next), revoked
}
