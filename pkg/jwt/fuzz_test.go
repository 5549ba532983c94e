package jwt

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, every
// error must be an *Error with a known reason, and an accepted token must
// carry a valid Ed25519 signature by the one configured key, checked here
// independently of jwx.
func FuzzVerify(f *testing.F) {
	ed := jwttest.NewEd25519(f)
	attacker := jwttest.NewEd25519(f)
	m, clock, _ := newTestManager(f, Options{})
	v := mustVerifier(f, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS(), ClockSkew: time.Minute})
	now := clock.Now()
	valid := ed.Mint(f, claims(now))
	for _, s := range []string{
		valid,
		ed.MintHeader(f, map[string]any{"alg": "Ed25519"}, claims(now)),
		attacker.WithKid(ed.Kid()).Mint(f, claims(now)),
		attacker.MintHeader(f, map[string]any{"jwk": attacker.PublicJWK(f)}, claims(now)),
		jwttest.Unsigned(f, "none", claims(now)),
		jwttest.Sign(f, "HS256", []byte(ed.JWKS()), map[string]any{"alg": "HS256", "kid": ed.Kid()}, claims(now)),
		ed.MintHeader(f, map[string]any{"crit": []string{"x"}, "x": 1}, claims(now)),
		"", ".", "..", "a.b.c", "e30.e30.", valid + ".", strings.Repeat("A", 100),
	} {
		f.Add(s)
	}
	known := map[Reason]bool{}
	for _, r := range Reasons() {
		known[r] = true
	}
	pub := ed.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !known[ReasonOf(err)] {
				t.Fatalf("error without a known reason: %v", err)
			}
			return
		}
		if id == nil {
			t.Fatal("nil identity without error")
		}
		i := strings.LastIndexByte(raw, '.')
		sig, decErr := base64.RawURLEncoding.DecodeString(raw[i+1:])
		if decErr != nil || !ed25519.Verify(pub, []byte(raw[:i]), sig) {
			t.Fatalf("accepted a token not signed by the configured key")
		}
	})
}
