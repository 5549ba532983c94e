package jwt

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// cacheBenchEntries is how many distinct tokens BenchmarkTokenCacheBytes
// caches per round.
const cacheBenchEntries = 20_000

// realisticClaims are an identity provider's usual claims for user i: the
// ones a policy reads (sub, email for forwardClaims, role for allowIf, plan
// for tiers) and the ones it does not (name, picture, sid, ...).
func realisticClaims(now time.Time, i int) map[string]any {
	return map[string]any{
		"sub":            fmt.Sprintf("5f0c3a9e-7d1b-4c2a-9e8f-%012d", i),
		"iss":            testIssuer,
		"aud":            []string{"api", "https://api.example.com"},
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"email":          fmt.Sprintf("user%06d@example.com", i),
		"email_verified": true,
		"name":           fmt.Sprintf("Example User %06d", i),
		"picture":        fmt.Sprintf("https://avatars.example.com/u/%06d.png?size=128", i),
		"role":           "user",
		"plan":           "premium",
		"sid":            fmt.Sprintf("sess_%027d", i),
		"org":            map[string]any{"id": "org_42", "roles": []string{"member"}},
	}
}

// BenchmarkTokenCacheBytes reports the heap the verified-token cache holds
// per entry (B/entry), for tokens with realisticClaims under a policy that
// reads sub, email, role and plan. Run it with -benchtime=1x: each round
// fills a fresh cache with cacheBenchEntries tokens and measures the live
// heap after a collection.
func BenchmarkTokenCacheBytes(b *testing.B) {
	k := jwttest.New(b, "HS256")
	now := time.Now()
	tokens := make([]string, cacheBenchEntries)
	for i := range tokens {
		tokens[i] = k.Mint(b, realisticClaims(now, i))
	}
	secrets := secretFunc(func(context.Context, SecretRef) ([]byte, error) { return k.Secret(), nil })
	var perEntry float64
	for b.Loop() {
		b.StopTimer()
		m := NewManager(Options{CacheSize: 2 * cacheBenchEntries, Secrets: secrets})
		v, err := m.Verifier(benchCacheConfig())
		if err != nil {
			b.Fatal(err)
		}
		if err := v.WaitKeys(context.Background()); err != nil {
			b.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		for _, tok := range tokens {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n := m.cache.len(); n != cacheBenchEntries {
			b.Fatalf("cache holds %d entries, want %d", n, cacheBenchEntries)
		}
		perEntry = float64(after.HeapAlloc-before.HeapAlloc) / cacheBenchEntries
		runtime.KeepAlive(v)
		m.Close()
		b.StartTimer()
	}
	b.ReportMetric(perEntry, "B/entry")
}

// benchCacheConfig is the policy of BenchmarkTokenCacheBytes: it reads
// sub, email (forwarded), role (allowIf) and plan (tiers).
func benchCacheConfig() Config {
	return Config{Issuer: testIssuer, Audiences: []string{"api"}, Secret: &SecretRef{Namespace: "ns", Name: "n", Key: "k"}, Claims: []string{"email", "plan", "role"}}
}
