package jwt

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// benchVerifier returns a verifier and a valid token for alg; cached
// selects whether the verified-token cache is on.
func benchVerifier(b *testing.B, alg string, cached bool) (*Verifier, string) {
	b.Helper()
	k := jwttest.New(b, alg)
	opts := Options{CacheSize: -1}
	if cached {
		opts.CacheSize = 0
	}
	if alg[:2] == "HS" {
		opts.Secrets = secretFunc(func(context.Context, SecretRef) ([]byte, error) { return k.Secret(), nil })
	}
	m, clock, _ := newTestManager(b, opts)
	cfg := Config{Issuer: testIssuer, Audiences: []string{"api"}}
	if alg[:2] == "HS" {
		cfg.Secret = &SecretRef{Namespace: "ns", Name: "n", Key: "k"}
	} else {
		cfg.InlineJWKS = k.JWKS()
	}
	v := mustVerifier(b, m, cfg)
	tok := k.Mint(b, claims(clock.Now()))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	return v, tok
}

func benchmarkVerify(b *testing.B, alg string, cached bool) {
	v, tok := benchVerifier(b, alg, cached)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyUncachedEdDSA(b *testing.B) { benchmarkVerify(b, "EdDSA", false) }
func BenchmarkVerifyUncachedES256(b *testing.B) { benchmarkVerify(b, "ES256", false) }
func BenchmarkVerifyUncachedRS256(b *testing.B) { benchmarkVerify(b, "RS256", false) }
func BenchmarkVerifyUncachedHS256(b *testing.B) { benchmarkVerify(b, "HS256", false) }
func BenchmarkVerifyCachedEdDSA(b *testing.B)   { benchmarkVerify(b, "EdDSA", true) }

// BenchmarkVerifyCachedParallel measures cache hits from all cores.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	v, tok := benchVerifier(b, "EdDSA", true)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkVerifyUncachedHS256DirSecrets measures cache misses against a
// mounted-Secret directory, from all cores: the request path must not
// serialise on the resolver or stat the file.
func BenchmarkVerifyUncachedHS256DirSecrets(b *testing.B) {
	k := jwttest.New(b, "HS256")
	dir := b.TempDir()
	p := filepath.Join(dir, "ns", "n", "k")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, k.Secret(), 0o600); err != nil {
		b.Fatal(err)
	}
	m, clock, _ := newTestManager(b, Options{CacheSize: -1, Secrets: NewDirSecrets(dir, nil)})
	v := mustVerifier(b, m, Config{Issuer: testIssuer, Audiences: []string{"api"}, Secret: &SecretRef{Namespace: "ns", Name: "n", Key: "k"}})
	tok := k.Mint(b, claims(clock.Now()))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
