// Package jwttest mints tokens for tests: keys with their JWKS, well-formed
// tokens, and hand-built tokens with arbitrary headers for attack cases.
// It depends only on jwx, so any package (pkg/jwt included) can use it.
package jwttest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Key is a signing key for tests. Asymmetric keys come with a public JWKS;
// HS keys with a secret.
type Key struct {
	alg    string // JOSE algorithm used to sign, e.g. "EdDSA"
	kid    string
	priv   any // crypto.Signer, or []byte for HS
	pub    any // public key, nil for HS
	secret []byte
}

// New generates a key for alg: EdDSA, ES256/384/512, RS256/384/512,
// PS256/384/512 or HS256/384/512. Its kid is random.
func New(t testing.TB, alg string) *Key {
	t.Helper()
	k := &Key{alg: alg, kid: randomID(t)}
	var err error
	switch alg {
	case "EdDSA":
		var priv ed25519.PrivateKey
		k.pub, priv, err = ed25519.GenerateKey(rand.Reader)
		k.priv = priv
	case "ES256", "ES384", "ES512":
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		var priv *ecdsa.PrivateKey
		priv, err = ecdsa.GenerateKey(curve, rand.Reader)
		if err == nil {
			k.priv, k.pub = priv, &priv.PublicKey
		}
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		var priv *rsa.PrivateKey
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
		if err == nil {
			k.priv, k.pub = priv, &priv.PublicKey
		}
	case "HS256", "HS384", "HS512":
		k.secret = []byte(randomID(t) + randomID(t) + randomID(t)) // 48 ASCII bytes
		k.priv = k.secret
	default:
		t.Fatalf("jwttest: unsupported algorithm %q", alg)
	}
	if err != nil {
		t.Fatalf("jwttest: generate %s key: %v", alg, err)
	}
	return k
}

// NewEd25519 is New(t, "EdDSA").
func NewEd25519(t testing.TB) *Key { return New(t, "EdDSA") }

// NewES256 is New(t, "ES256").
func NewES256(t testing.TB) *Key { return New(t, "ES256") }

// NewRS256 is New(t, "RS256").
func NewRS256(t testing.TB) *Key { return New(t, "RS256") }

// NewHS256 is New(t, "HS256").
func NewHS256(t testing.TB) *Key { return New(t, "HS256") }

// WithKid returns the same key material under another kid.
func (k *Key) WithKid(kid string) *Key {
	c := *k
	c.kid = kid
	return &c
}

// Kid returns the key id.
func (k *Key) Kid() string { return k.kid }

// Alg returns the signing algorithm.
func (k *Key) Alg() string { return k.alg }

// Secret returns the HS secret (nil for asymmetric keys).
func (k *Key) Secret() []byte { return k.secret }

// Private returns the private key (crypto.Signer, or []byte for HS).
func (k *Key) Private() any { return k.priv }

// Public returns the public key (nil for HS).
func (k *Key) Public() any { return k.pub }

// PublicJWK returns the public JWK as a JSON object with kid, alg and use.
func (k *Key) PublicJWK(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := k.publicJWK(true)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// PublicJWKNoAlg is PublicJWK without the "alg" member.
func (k *Key) PublicJWKNoAlg(t testing.TB) json.RawMessage {
	t.Helper()
	b, err := k.publicJWK(false)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *Key) publicJWK(withAlg bool) (json.RawMessage, error) {
	if k.pub == nil {
		return nil, fmt.Errorf("jwttest: %s key has no public JWK", k.alg)
	}
	j, err := jwk.FromRaw(k.pub)
	if err != nil {
		return nil, fmt.Errorf("jwttest: jwk: %w", err)
	}
	_ = j.Set(jwk.KeyIDKey, k.kid)
	_ = j.Set(jwk.KeyUsageKey, "sig")
	if withAlg {
		_ = j.Set(jwk.AlgorithmKey, k.alg)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("jwttest: encode jwk: %w", err)
	}
	return b, nil
}

// JWKS returns a JWKS document holding this key's public JWK.
func (k *Key) JWKS() string {
	return JWKS(k)
}

// JWKS returns a JWKS document with the public JWKs of keys; HS keys,
// which have none, are left out.
func JWKS(keys ...*Key) string {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	set.Keys = []json.RawMessage{}
	for _, k := range keys {
		if b, err := k.publicJWK(true); err == nil {
			set.Keys = append(set.Keys, b)
		}
	}
	b, _ := json.Marshal(set)
	return string(b)
}

// Claims returns standard claims: sub, iss, aud, iat = now and exp = now+ttl.
func Claims(sub, iss, aud string, now time.Time, ttl time.Duration) map[string]any {
	c := map[string]any{"sub": sub, "iss": iss, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	if aud != "" {
		c["aud"] = aud
	}
	return c
}

// Mint signs claims with the header {"alg", "typ": "JWT", "kid"}. When
// claims lack "exp", it is set to one hour from time.Now; set it yourself
// when the verifier runs on a fake clock.
func (k *Key) Mint(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := maps.Clone(claims)
	if c == nil {
		c = map[string]any{}
	}
	if _, ok := c["exp"]; !ok {
		c["exp"] = time.Now().Add(time.Hour).Unix()
	}
	return k.MintHeader(t, map[string]any{"typ": "JWT", "kid": k.kid}, c)
}

// MintHeader signs claims exactly as given under header; "alg" is set to
// the key's algorithm when header lacks it (a header "alg" of another value
// is kept, but the key's algorithm still signs).
func (k *Key) MintHeader(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h := maps.Clone(header)
	if h == nil {
		h = map[string]any{}
	}
	if _, ok := h["alg"]; !ok {
		h["alg"] = k.alg
	}
	return Sign(t, k.alg, k.priv, h, claims)
}

// Sign builds a compact JWS from header and claims (encoded as JSON) and
// signs it with key under signAlg, whatever the header says. It is the
// building block for attack tokens (alg confusion, embedded jwk, ...).
func Sign(t testing.TB, signAlg string, key any, header, claims map[string]any) string {
	t.Helper()
	input := Encode(t, header, claims)
	signer, err := jws.NewSigner(jwa.SignatureAlgorithm(signAlg))
	if err != nil {
		t.Fatalf("jwttest: signer %s: %v", signAlg, err)
	}
	sig, err := signer.Sign([]byte(input), key)
	if err != nil {
		t.Fatalf("jwttest: sign: %v", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Encode returns the signing input "b64(header).b64(claims)".
func Encode(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatalf("jwttest: header: %v", err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("jwttest: claims: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
}

// Unsigned returns an "alg" (e.g. "none") token with an empty signature.
func Unsigned(t testing.TB, alg string, claims map[string]any) string {
	t.Helper()
	return Encode(t, map[string]any{"alg": alg, "typ": "JWT"}, claims) + "."
}

// PublicKeyPEM returns the PKIX PEM of the public key, the bytes an
// HS256-confusion attacker would use as the HMAC secret.
func (k *Key) PublicKeyPEM(t testing.TB) []byte {
	t.Helper()
	b, err := jwk.EncodePEM(k.pub)
	if err != nil {
		t.Fatalf("jwttest: pem: %v", err)
	}
	return b
}

func randomID(t testing.TB) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("jwttest: random: %v", err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
