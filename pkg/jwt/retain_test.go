package jwt

import (
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

func TestRetainDropsUnusedSources(t *testing.T) {
	key := jwttest.NewEd25519(t)
	kept := newJWKSServer(t, key.JWKS())
	dropped := newJWKSServer(t, key.JWKS())
	m, _, _ := newTestManager(t, Options{})
	keptCfg := Config{Issuer: testIssuer, JWKSURI: kept.URL}
	droppedCfg := Config{Issuer: testIssuer, JWKSURI: dropped.URL}
	inlineCfg := Config{Issuer: testIssuer, InlineJWKS: key.JWKS()}
	waitKeys(t, mustVerifier(t, m, keptCfg))
	waitKeys(t, mustVerifier(t, m, droppedCfg))
	mustVerifier(t, m, inlineCfg)
	keptSource := m.remotes["jwks "+kept.URL]

	m.Retain([]Config{keptCfg})

	m.mu.Lock()
	remotes, stops, inline, vids := len(m.remotes), len(m.stops), len(m.inline), len(m.vids)
	stillKept := m.remotes["jwks "+kept.URL] == keptSource
	m.mu.Unlock()
	if remotes != 1 || stops != 1 || inline != 0 || vids != 1 || !stillKept {
		t.Fatalf("after Retain: %d remotes (kept one reused: %v), %d stoppers, %d inline sets, %d cache namespaces; want 1, true, 1, 0, 1",
			remotes, stillKept, stops, inline, vids)
	}
	// A policy that comes back gets a new source, which fetches again.
	before := dropped.fetches.Load()
	waitKeys(t, mustVerifier(t, m, droppedCfg))
	if dropped.fetches.Load() == before {
		t.Fatal("a re-added JWKS was not fetched again: its source was never dropped")
	}
	// Cache namespaces stay distinct after some were dropped.
	a, b := mustVerifier(t, m, keptCfg), mustVerifier(t, m, inlineCfg)
	if a.vid == b.vid {
		t.Fatalf("two configs share cache namespace %d", a.vid)
	}
}
