package jwt

import (
	"context"
	"testing"
	"time"
)

func TestGenerateKeyAndMint(t *testing.T) {
	for _, alg := range []string{"EdDSA", "Ed25519", "ES256", "ES384", "ES512", "RS256", "PS256"} {
		t.Run(alg, func(t *testing.T) {
			priv, jwks, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			m, clock, _ := newTestManager(t, Options{})
			v := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: string(jwks)})
			tok, err := MintAt(priv, map[string]any{"sub": "dev", "iss": testIssuer}, clock.Now(), 15*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			id, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if id.Subject != "dev" || !id.Expiry().Equal(clock.Now().Add(15*time.Minute)) {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
	if _, _, err := GenerateKey("HS256"); err == nil {
		t.Fatal("GenerateKey(HS256) must point to GenerateSecret")
	}
	if _, _, err := GenerateKey("none"); err == nil {
		t.Fatal("GenerateKey(none) succeeded")
	}
}

func TestMintWithSecret(t *testing.T) {
	secret, err := GenerateSecret()
	if err != nil || len(secret) < minSecretLen {
		t.Fatalf("GenerateSecret = %q, %v", secret, err)
	}
	m := NewManager(Options{Secrets: secretFunc(func(context.Context, SecretRef) ([]byte, error) { return secret, nil })})
	defer m.Close()
	v := mustVerifier(t, m, Config{Issuer: testIssuer, Secret: &SecretRef{Namespace: "ns", Name: "n", Key: "k"}, Algorithms: []string{"HS384"}})
	tok, err := MintWithSecret(secret, "HS384", map[string]any{"iss": testIssuer, "sub": "dev"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if _, err := MintWithSecret(secret, "EdDSA", nil, time.Minute); err == nil {
		t.Fatal("MintWithSecret accepted an asymmetric alg")
	}
}
