package jwt

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// nestedHeaderToken returns a token just under MaxTokenSize whose header
// nests arrays as deep as fits: the cost of rejecting it must not grow with
// the nesting (issue 13 §2).
func nestedHeaderToken(t testing.TB, kid string, now time.Time) string {
	t.Helper()
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","iss":"` + testIssuer + `","exp":` +
		strconv.FormatInt(now.Add(time.Hour).Unix(), 10) + `}`))
	sig := base64.RawURLEncoding.EncodeToString(make([]byte, 64))
	prefix := `{"alg":"EdDSA","kid":"` + kid + `","x":`
	budget := (MaxTokenSize-len(payload)-len(sig)-2)*3/4 - len(prefix) - 1
	depth := budget / 2
	hdr := prefix + strings.Repeat("[", depth) + strings.Repeat("]", depth) + "}"
	tok := base64.RawURLEncoding.EncodeToString([]byte(hdr)) + "." + payload + "." + sig
	if len(tok) > MaxTokenSize {
		t.Fatalf("nested token is %d bytes", len(tok))
	}
	return tok
}

// BenchmarkRejectPaired measures the CPU cost of rejecting attack tokens
// against the cost of rejecting an ordinary forged token (a bad signature
// under the one key its kid names), in alternating rounds of one run so that
// the ratios survive a noisy machine. Reported metrics:
//
//   - baseline-ns: one ordinary bad-signature token;
//   - nested/baseline: a 16 KiB token whose header nests arrays ~6,000 deep;
//   - dupkid/baseline: a bad-signature token whose kid names 50 keys of the
//     set. A set with duplicate kids is refused once keys are capped per
//     kid; the benchmark then uses the worst set that loads (50 keys, the
//     token's kid among them) and says so in dupkid-set-refused.
func BenchmarkRejectPaired(b *testing.B) {
	m, clock, _ := newTestManager(b, Options{CacheSize: -1})
	now := clock.Now()
	ctx := context.Background()

	ed := jwttest.NewEd25519(b)
	attacker := jwttest.NewEd25519(b).WithKid(ed.Kid())
	single := mustVerifier(b, m, Config{Issuer: testIssuer, InlineJWKS: ed.JWKS()})
	forged := attacker.Mint(b, claims(now))
	nested := nestedHeaderToken(b, ed.Kid(), now)

	dupKeys := make([]*jwttest.Key, 50)
	for i := range dupKeys {
		dupKeys[i] = jwttest.NewEd25519(b).WithKid("dup")
	}
	dupForged := attacker.WithKid("dup").Mint(b, claims(now))
	dup, err := m.Verifier(Config{Issuer: testIssuer, InlineJWKS: jwttest.JWKS(dupKeys...)})
	refused := 0.0
	if err != nil {
		refused = 1
		for i := range dupKeys[1:] {
			dupKeys[i+1] = jwttest.NewEd25519(b)
		}
		dup = mustVerifier(b, m, Config{Issuer: testIssuer, InlineJWKS: jwttest.JWKS(dupKeys...)})
	}
	for _, c := range []struct {
		v   *Verifier
		tok string
	}{{single, forged}, {single, nested}, {dup, dupForged}} {
		if _, err := c.v.Verify(ctx, c.tok); err == nil {
			b.Fatal("attack token accepted")
		}
	}

	const rounds = 20
	run := func(v *Verifier, tok string) time.Duration {
		start := time.Now()
		for range rounds {
			_, _ = v.Verify(ctx, tok)
		}
		return time.Since(start)
	}
	var tBase, tNested, tDup time.Duration
	b.ReportAllocs()
	for b.Loop() {
		tBase += run(single, forged)
		tNested += run(single, nested)
		tDup += run(dup, dupForged)
	}
	n := float64(b.N * rounds)
	b.ReportMetric(float64(tBase)/n, "baseline-ns")
	b.ReportMetric(float64(tNested)/float64(tBase), "nested/baseline")
	b.ReportMetric(float64(tDup)/float64(tBase), "dupkid/baseline")
	b.ReportMetric(refused, "dupkid-set-refused")
}
