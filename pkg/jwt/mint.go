package jwt

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// This file holds the developer helpers behind `tollgate token`: key
// generation and token minting. Verification never uses them.

// GenerateKey creates a signing key for an asymmetric algorithm (EdDSA or
// Ed25519, ES256/384/512, RS256/384/512, PS256/384/512; RSA keys have 2048
// bits). It returns the private key as a JWK and the matching public JWKS
// (the "jwks" / jwksURI document). Both carry "alg", "use": "sig" and a
// "kid" equal to the key's RFC 7638 thumbprint. For HS algorithms use
// GenerateSecret.
func GenerateKey(alg string) (privateJWK, publicJWKS []byte, err error) {
	canon, err := ParseAlgorithm(alg)
	if err != nil {
		return nil, nil, err
	}
	var raw any
	switch info := algorithm(canon); info.Family {
	case famEdDSA:
		_, raw, err = ed25519.GenerateKey(rand.Reader)
	case famEC:
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[info.Curve]
		raw, err = ecdsa.GenerateKey(curve, rand.Reader)
	case famRSA:
		raw, err = rsa.GenerateKey(rand.Reader, minRSABits)
	default:
		return nil, nil, fmt.Errorf("jwt: %s is symmetric: use GenerateSecret", canon)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("jwt: generate %s key: %w", canon, err)
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("jwt: wrap key: %w", err)
	}
	tp, err := priv.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, nil, fmt.Errorf("jwt: thumbprint: %w", err)
	}
	for k, v := range map[string]any{jwk.KeyIDKey: base64.RawURLEncoding.EncodeToString(tp), jwk.AlgorithmKey: canon, jwk.KeyUsageKey: "sig"} {
		if err := priv.Set(k, v); err != nil {
			return nil, nil, fmt.Errorf("jwt: set %s: %w", k, err)
		}
	}
	if privateJWK, err = json.Marshal(priv); err != nil {
		return nil, nil, fmt.Errorf("jwt: encode private key: %w", err)
	}
	if publicJWKS, err = PublicJWKS(privateJWK); err != nil {
		return nil, nil, err
	}
	return privateJWK, publicJWKS, nil
}

// GenerateEd25519 is GenerateKey("EdDSA"), the algorithm Better Auth uses.
func GenerateEd25519() (privateJWK, publicJWKS []byte, err error) {
	return GenerateKey("EdDSA")
}

// GenerateSecret returns a new random HS secret: 32 random bytes encoded
// as unpadded base64url (43 ASCII bytes), ready to be stored in a Secret.
func GenerateSecret() ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("jwt: random: %w", err)
	}
	return []byte(base64.RawURLEncoding.EncodeToString(b)), nil
}

// PublicJWKS returns the public JWKS document ({"keys":[...]}) for a
// private JWK produced by GenerateKey.
func PublicJWKS(privateJWK []byte) ([]byte, error) {
	priv, err := jwk.ParseKey(privateJWK)
	if err != nil {
		return nil, fmt.Errorf("jwt: parse private key: %w", err)
	}
	pub, err := priv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("jwt: public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("jwt: build jwks: %w", err)
	}
	out, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("jwt: encode jwks: %w", err)
	}
	return out, nil
}

// Mint signs claims with a private JWK from GenerateKey, at time.Now. See
// MintAt.
func Mint(privateJWK []byte, claims map[string]any, ttl time.Duration) (string, error) {
	return MintAt(privateJWK, claims, time.Now(), ttl)
}

// MintAt signs claims with a private JWK (its "alg" decides the algorithm,
// its "kid" goes into the header). Unless claims set them, "iat" is now and
// "exp" is now+ttl (no exp when ttl <= 0). claims is not modified.
func MintAt(privateJWK []byte, claims map[string]any, now time.Time, ttl time.Duration) (string, error) {
	priv, err := jwk.ParseKey(privateJWK)
	if err != nil {
		return "", fmt.Errorf("jwt: parse private key: %w", err)
	}
	alg := priv.Algorithm().String()
	if alg == "" {
		return "", fmt.Errorf("jwt: private key has no alg")
	}
	return mint(priv, alg, claims, now, ttl)
}

// MintWithSecret signs claims with an HS shared secret; alg is HS256, HS384
// or HS512. Defaults as in MintAt, at time.Now.
func MintWithSecret(secret []byte, alg string, claims map[string]any, ttl time.Duration) (string, error) {
	canon, err := ParseAlgorithm(alg)
	if err != nil {
		return "", err
	}
	if algorithm(canon).Family != famHMAC {
		return "", fmt.Errorf("jwt: %s is not an HS algorithm", canon)
	}
	k, err := jwk.FromRaw(secret)
	if err != nil {
		return "", fmt.Errorf("jwt: wrap secret: %w", err)
	}
	return mint(k, canon, claims, time.Now(), ttl)
}

func mint(k jwk.Key, alg string, claims map[string]any, now time.Time, ttl time.Duration) (string, error) {
	canon, err := ParseAlgorithm(alg)
	if err != nil {
		return "", err
	}
	c := maps.Clone(claims)
	if c == nil {
		c = map[string]any{}
	}
	if _, ok := c["iat"]; !ok {
		c["iat"] = now.Unix()
	}
	if _, ok := c["exp"]; !ok && ttl > 0 {
		c["exp"] = now.Add(ttl).Unix()
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("jwt: encode claims: %w", err)
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", fmt.Errorf("jwt: header: %w", err)
	}
	if kid := k.KeyID(); kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			return "", fmt.Errorf("jwt: header: %w", err)
		}
	}
	tok, err := jws.Sign(payload, jws.WithKey(jwa.SignatureAlgorithm(canon), k, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("jwt: sign: %w", err)
	}
	return string(tok), nil
}
