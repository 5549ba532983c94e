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
	info := algorithms[alg]
	if info.family != k.family {
		return false
	}
	if info.family == famEC && info.curve != k.curve {
		return false
	}
	return k.alg == "" || k.alg == alg
}

// keySet is an immutable set of keys.
type keySet struct {
	byKid  map[string][]*key
	all    []*key
	anyKid bool // every key is a candidate whatever the token's kid (HS secrets)
}

func newKeySet(keys []*key) *keySet {
	s := &keySet{byKid: make(map[string][]*key, len(keys)), all: keys}
	for _, k := range keys {
		s.byKid[k.kid] = append(s.byKid[k.kid], k)
	}
	return s
}

// candidates returns the keys a token with this kid may be checked against:
// the keys with that kid, or every key when the token names none.
func (s *keySet) candidates(kid string, hasKid bool) []*key {
	if !hasKid || s.anyKid {
		return s.all
	}
	return s.byKid[kid]
}

// skippedKey describes a JWKS member that was left out.
type skippedKey struct {
	Kid    string
	Reason string
}

// parseJWKS parses a JWKS document. Members with an unknown or unsupported
// kty, curve or alg, symmetric members, weak RSA keys and unparsable members
// are skipped and reported, never fatal. Only an unparsable document is an
// error.
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
		if alg = canonicalAlg(hdr.Alg); alg == "" {
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
	if alg != "" && algorithms[alg].family != fam {
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
		k.raw = rk
	case *ecdsa.PublicKey:
		k.curve = hdr.Crv
		if k.curve != "P-256" && k.curve != "P-384" && k.curve != "P-521" {
			return nil, fmt.Errorf("unsupported EC curve %q", hdr.Crv)
		}
		if alg != "" && algorithms[alg].curve != k.curve {
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
