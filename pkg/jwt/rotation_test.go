package jwt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// TestRotationUnderUnknownKidFlood (issue 13 §3): while unauthenticated
// callers flood tokens with unknown kids, a key the provider rotates in is
// accepted within 2 s of its publication, and the flood costs the JWKS at
// most one fetch per UnknownKidInterval. It runs on the real clock.
func TestRotationUnderUnknownKidFlood(t *testing.T) {
	old, next, attacker := jwttest.NewEd25519(t), jwttest.NewEd25519(t), jwttest.NewEd25519(t)
	srv := newJWKSServer(t, old.JWKS())
	m := NewManager(Options{CacheSize: -1})
	defer m.Close()
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	now := time.Now()
	flood := make([]string, 64)
	for i := range flood {
		flood[i] = attacker.WithKid(fmt.Sprintf("flood-%d", i)).Mint(t, claims(now))
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent atomic.Int64
	floodStart, fetchesAtStart := time.Now(), srv.fetches.Load()
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ctx.Err() == nil; i++ {
				if _, err := v.Verify(ctx, flood[i%len(flood)]); err == nil {
					t.Error("a flood token was accepted")
					return
				}
				sent.Add(1)
			}
		}()
	}
	// Publish the new key right after the flood caused a refresh: the
	// worst moment, as every refresh for the next interval is throttled.
	eventually(t, 5*time.Second, "the flood to cause a refresh", func() bool { return srv.fetches.Load() > fetchesAtStart })
	srv.body.Store(jwttest.JWKS(old, next))
	published := time.Now()
	nextTok := next.Mint(t, claims(now))
	var delay time.Duration
	for {
		if _, err := v.Verify(context.Background(), nextTok); err == nil {
			delay = time.Since(published)
			break
		}
		if time.Since(published) > 2*time.Second {
			stop()
			wg.Wait()
			t.Fatalf("the rotated-in key was not accepted within 2 s under the flood")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Keep flooding for a measured window, then check the fetch rate.
	for time.Since(floodStart) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	elapsed := time.Since(floodStart)
	fetches := srv.fetches.Load() - fetchesAtStart
	limit := int64(elapsed/UnknownKidInterval) + 1
	t.Logf("flood: %d unknown-kid tokens in %s; %d JWKS fetches (limit %d); new key accepted %s after publication",
		sent.Load(), elapsed.Round(time.Millisecond), fetches, limit, delay.Round(time.Millisecond))
	if fetches > limit {
		t.Fatalf("%d fetches in %s, want at most one per %s (%d)", fetches, elapsed, UnknownKidInterval, limit)
	}
	if sent.Load() < 1000 {
		t.Fatalf("only %d flood tokens were sent: no flood", sent.Load())
	}
}
