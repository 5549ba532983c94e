package jwt

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

func TestCacheHitSharesIdentityAndHonoursExp(t *testing.T) {
	k := jwttest.NewEd25519(t)
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: k.JWKS(), ClockSkew: 30 * time.Second})
	ctx := context.Background()
	tok := k.Mint(t, claims(clock.Now(), set("exp", clock.Now().Add(time.Minute).Unix())))
	id1, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != id2 {
		t.Fatal("second verify did not come from the cache")
	}
	// At exp the entry is gone; within the skew the full path still accepts.
	clock.Advance(time.Minute)
	id3, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("within skew: %v", err)
	}
	if id3 == id1 {
		t.Fatal("cache entry outlived the token's exp")
	}
	clock.Advance(31 * time.Second)
	if _, err := v.Verify(ctx, tok); ReasonOf(err) != ReasonExpired {
		t.Fatalf("after exp+skew: %v, want expired", err)
	}
}

func TestCacheIsPerVerifierConfig(t *testing.T) {
	k := jwttest.NewEd25519(t)
	m, clock, _ := newTestManager(t, Options{})
	jwks := k.JWKS()
	a := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: jwks, Audiences: []string{"api"}})
	ctx := context.Background()
	tok := k.Mint(t, claims(clock.Now()))
	if _, err := a.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	others := map[string]Config{
		"another audience":  {Issuer: testIssuer, InlineJWKS: jwks, Audiences: []string{"other"}},
		"another issuer":    {Issuer: "https://other.test", InlineJWKS: jwks},
		"another key set":   {Issuer: testIssuer, InlineJWKS: jwttest.NewEd25519(t).JWKS()},
		"another algorithm": {Issuer: testIssuer, InlineJWKS: jwks, Algorithms: []string{"ES256"}},
	}
	want := map[string]Reason{"another audience": ReasonBadAudience, "another issuer": ReasonBadIssuer, "another key set": ReasonUnknownKid, "another algorithm": ReasonAlgNotAllowed}
	for name, cfg := range others {
		b := mustVerifier(t, m, cfg)
		if _, err := b.Verify(ctx, tok); ReasonOf(err) != want[name] {
			t.Errorf("%s: %v, want %s", name, err, want[name])
		}
	}
	// An identical config (a recompiled policy) shares the entry.
	a2 := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: jwks, Audiences: []string{"api"}})
	if a2.vid != a.vid {
		t.Fatal("identical configs got different cache namespaces")
	}
}

func TestCacheIsBounded(t *testing.T) {
	k := jwttest.NewEd25519(t)
	m, clock, _ := newTestManager(t, Options{CacheSize: 128})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: k.JWKS()})
	for i := range 1000 {
		if _, err := v.Verify(context.Background(), k.Mint(t, claims(clock.Now(), set("sub", fmt.Sprint(i))))); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.cache.len(); n > 128 || n < 64 {
		t.Fatalf("cache holds %d entries, want between 64 and 128", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	k := jwttest.NewEd25519(t)
	m, clock, _ := newTestManager(t, Options{CacheSize: -1})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: k.JWKS()})
	tok := k.Mint(t, claims(clock.Now()))
	id1, _ := v.Verify(context.Background(), tok)
	id2, _ := v.Verify(context.Background(), tok)
	if id1 == nil || id1 == id2 || m.cache != nil {
		t.Fatal("cache not disabled")
	}
	if NewManager(Options{}).cache == nil {
		t.Fatal("CacheSize 0 must mean the default size")
	}
}
