package jwt

import (
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// TestKeySets: one state per remote key URL however many verifiers use
// it, with its key count and the age of its last good fetch by the
// Manager's clock; a set that never loaded has no keys; inline sets are
// not remote.
func TestKeySets(t *testing.T) {
	a, b := jwttest.NewEd25519(t), jwttest.NewEd25519(t)
	good := newJWKSServer(t, jwttest.JWKS(a, b))
	down := newJWKSServer(t, a.JWKS())
	down.down.Store(true)
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: good.URL})
	mustVerifier(t, m, Config{Issuer: "https://other.test", JWKSURI: good.URL, Audiences: []string{"x"}})
	mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: down.URL})
	mustVerifier(t, m, Config{Issuer: testIssuer, InlineJWKS: a.JWKS()})
	waitKeys(t, v)
	// The keys are served before the fetch records its time.
	eventually(t, 5*time.Second, "the fetch's time", func() bool {
		m.mu.Lock()
		s := m.remotes["jwks "+good.URL]
		m.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.lastOK.IsZero()
	})

	clock.Advance(90 * time.Second)
	got := m.KeySets()
	want := map[string]KeySetState{
		good.URL: {URI: good.URL, Keys: 2, Age: 90 * time.Second},
		down.URL: {URI: down.URL},
	}
	if len(got) != len(want) {
		t.Fatalf("key sets %+v, want %d", got, len(want))
	}
	for _, st := range got {
		if st != want[st.URI] {
			t.Errorf("%+v, want %+v", st, want[st.URI])
		}
	}
	m.Retain([]Config{{Issuer: testIssuer, JWKSURI: good.URL}})
	if got := m.KeySets(); len(got) != 1 || got[0].URI != good.URL {
		t.Errorf("after Retain: %+v", got)
	}
}
