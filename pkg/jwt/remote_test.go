package jwt

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// jwksServer serves a JWKS that tests can swap, take down and inspect.
type jwksServer struct {
	*httptest.Server
	fetches      atomic.Int64
	down         atomic.Bool
	body         atomic.Value // string
	cacheControl atomic.Value // string
}

func newJWKSServer(t *testing.T, body string) *jwksServer {
	s := &jwksServer{}
	s.body.Store(body)
	s.cacheControl.Store("")
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			panic(http.ErrAbortHandler) // drop the connection: unreachable
		}
		s.fetches.Add(1)
		if cc := s.cacheControl.Load().(string); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(s.body.Load().(string)))
	}))
	t.Cleanup(s.Close)
	return s
}

func waitKeys(t *testing.T, v *Verifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := v.WaitKeys(ctx); err != nil {
		t.Fatalf("WaitKeys: %v", err)
	}
}

func TestRemoteRotation(t *testing.T) {
	old := jwttest.NewEd25519(t)
	next := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, old.JWKS())
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	ctx := context.Background()

	oldTok := old.Mint(t, claims(clock.Now()))
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("old key before rotation: %v", err)
	}
	// The provider rotates: the new key is published, the old one retired.
	// The first unknown kid since the keys were loaded refreshes at once,
	// however recent the last (background) fetch.
	srv.body.Store(next.JWKS())
	nextTok := next.Mint(t, claims(clock.Now()))
	if _, err := v.Verify(ctx, nextTok); err != nil {
		t.Fatalf("new key right after rotation: %v", err)
	}
	// It rotates again at once: that refresh is rate limited.
	third := jwttest.NewEd25519(t)
	srv.body.Store(third.JWKS())
	thirdTok := third.Mint(t, claims(clock.Now()))
	if _, err := v.Verify(ctx, thirdTok); ReasonOf(err) != ReasonUnknownKid {
		t.Fatalf("new kid within UnknownKidInterval of the last refresh: %v, want unknown_kid (rate limited)", err)
	}
	clock.Advance(UnknownKidInterval)
	if _, err := v.Verify(ctx, thirdTok); err != nil {
		t.Fatalf("new key after rotation: %v", err)
	}
	// oldTok was in the verified-token cache; its key left the JWKS.
	if _, err := v.Verify(ctx, oldTok); ReasonOf(err) != ReasonUnknownKid {
		t.Fatalf("token of a retired key: %v, want unknown_kid", err)
	}
	if got := srv.fetches.Load(); got != 3 {
		t.Fatalf("fetches = %d, want 3", got)
	}
}

func TestRemoteSharedBetweenVerifiers(t *testing.T) {
	k := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, k.JWKS())
	m, clock, _ := newTestManager(t, Options{})
	cfg := Config{Issuer: testIssuer, JWKSURI: srv.URL}
	waitKeys(t, mustVerifier(t, m, cfg))
	// A recompiled policy (new Verifier, other audience) reuses the key set.
	cfg.Audiences = []string{"api"}
	v2 := mustVerifier(t, m, cfg)
	if _, err := v2.Verify(context.Background(), k.Mint(t, claims(clock.Now()))); err != nil {
		t.Fatal(err)
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("fetches = %d, want 1", got)
	}
}

func TestRemoteUnknownKidFlood(t *testing.T) {
	k := jwttest.NewEd25519(t)
	attacker := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, k.JWKS())
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	clock.Advance(time.Minute) // a refresh is allowed again

	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = attacker.WithKid(fmt.Sprintf("kid-%d", i)).Mint(t, claims(clock.Now()))
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	reasons := make([]Reason, len(tokens))
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := v.Verify(context.Background(), tok)
			reasons[i] = ReasonOf(err)
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range reasons {
		if r != ReasonUnknownKid {
			t.Fatalf("token %d: reason %q, want unknown_kid", i, r)
		}
	}
	got := srv.fetches.Load()
	if got > 5 {
		t.Fatalf("50 unknown kids caused %d JWKS fetches, want at most 5", got)
	}
	if got < 2 {
		t.Fatalf("fetches = %d: the unknown kids did not trigger the one allowed refresh", got)
	}
	t.Logf("50 concurrent unknown kids → %d fetches (1 initial)", got)
}

// TestRemoteOutageKeepsKeys: a JWKS that goes down keeps its keys, and a
// kid the set lacks is then an outage (keys_unavailable, a 503), not the
// token's fault — also while further refreshes are throttled — until a
// fetch succeeds again.
func TestRemoteOutageKeepsKeys(t *testing.T) {
	k := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, k.JWKS())
	m, clock, logs := newTestManager(t, Options{CacheSize: -1})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	srv.down.Store(true)
	clock.Advance(time.Minute)
	ctx := context.Background()
	unknown := jwttest.NewEd25519(t).Mint(t, claims(clock.Now()))
	// An unknown kid triggers a refresh that fails...
	if _, err := v.Verify(ctx, unknown); ReasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("unknown kid during outage: %v, want keys_unavailable", err)
	}
	if !strings.Contains(logs.String(), "jwks fetch failed") {
		t.Fatal("the failed refresh was not attempted/logged")
	}
	// ...the next one, throttled, still knows the set is stale...
	if _, err := v.Verify(ctx, unknown); ReasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("unknown kid during outage, throttled: %v, want keys_unavailable", err)
	}
	// ...and the set is never emptied: known keys keep working.
	if _, err := v.Verify(ctx, k.Mint(t, claims(clock.Now()))); err != nil {
		t.Fatalf("known key during outage: %v", err)
	}
	// Once the JWKS answers again, an unknown kid is the token's fault.
	srv.down.Store(false)
	clock.Advance(time.Minute)
	if _, err := v.Verify(ctx, unknown); ReasonOf(err) != ReasonUnknownKid {
		t.Fatalf("unknown kid after recovery: %v, want unknown_kid", err)
	}
}

func TestRemoteUnreachableAtStartRecovers(t *testing.T) {
	k := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, k.JWKS())
	srv.down.Store(true)
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	ctx := context.Background()
	if err := v.WaitKeys(ctx); err == nil {
		t.Fatal("WaitKeys succeeded with the JWKS down")
	}
	tok := k.Mint(t, claims(clock.Now()))
	if _, err := v.Verify(ctx, tok); ReasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("reason = %q, want keys_unavailable", ReasonOf(err))
	}
	srv.down.Store(false)
	clock.Advance(11 * time.Second)
	eventually(t, 10*time.Second, "the JWKS to be picked up", func() bool {
		_, err := v.Verify(ctx, tok)
		return err == nil
	})
}

func TestRemoteCacheControl(t *testing.T) {
	cases := map[string]struct {
		headers []string // name, value, ...
		want    time.Duration
	}{
		"no freshness information":          {nil, defaultRefresh},
		"a short max-age is clamped":        {[]string{"Cache-Control", "max-age=5"}, minRefresh},
		"max-age is honoured":               {[]string{"Cache-Control", "max-age=120"}, 2 * time.Minute},
		"max-age among other directives":    {[]string{"Cache-Control", "public, max-age=600"}, 10 * time.Minute},
		"a long max-age is clamped":         {[]string{"Cache-Control", "max-age=86400"}, maxRefresh},
		"an unparsable max-age is ignored":  {[]string{"Cache-Control", "max-age=99999999999999999999"}, defaultRefresh},
		"no-store is the shortest":          {[]string{"Cache-Control", "no-store"}, minRefresh},
		"no-cache wins over max-age":        {[]string{"Cache-Control", "no-cache, max-age=3000"}, minRefresh},
		"directives are case-insensitive":   {[]string{"Cache-Control", "MAX-AGE=1800"}, 30 * time.Minute},
		"a negative max-age is ignored":     {[]string{"Cache-Control", "max-age=-1"}, defaultRefresh},
		"Age is deducted from max-age":      {[]string{"Cache-Control", "max-age=1800", "Age", "600"}, 20 * time.Minute},
		"Age beyond max-age is stale":       {[]string{"Cache-Control", "max-age=600", "Age", "900"}, minRefresh},
		"Expires less Date without max-age": {[]string{"Date", "Mon, 02 Jan 2006 15:00:00 GMT", "Expires", "Mon, 02 Jan 2006 15:15:00 GMT"}, 15 * time.Minute},
		"max-age wins over Expires":         {[]string{"Cache-Control", "max-age=120", "Date", "Mon, 02 Jan 2006 15:00:00 GMT", "Expires", "Mon, 02 Jan 2006 15:15:00 GMT"}, 2 * time.Minute},
		"an invalid Expires is stale":       {[]string{"Expires", "0"}, minRefresh},
	}
	for name, c := range cases {
		h := http.Header{}
		for i := 0; i+1 < len(c.headers); i += 2 {
			h.Set(c.headers[i], c.headers[i+1])
		}
		if got := refreshFromHeaders(h); got != c.want {
			t.Errorf("%s: refreshFromHeaders(%v) = %s, want %s", name, h, got, c.want)
		}
	}

	k := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, k.JWKS())
	srv.cacheControl.Store("public, max-age=120")
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	src := v.src.(*remoteSource)
	if got := src.refreshInterval(); got != 2*time.Minute {
		t.Fatalf("refresh interval from the server = %s, want 2m", got)
	}
	// The background refresh is due when the last successful fetch, on
	// demand or not, is as old as its freshness.
	if got := src.untilStale(); got != 2*time.Minute {
		t.Fatalf("untilStale = %s, want 2m", got)
	}
	clock.Advance(90 * time.Second)
	if _, err := v.Verify(context.Background(), jwttest.NewEd25519(t).Mint(t, claims(clock.Now()))); ReasonOf(err) != ReasonUnknownKid {
		t.Fatalf("unknown kid: %v", err)
	}
	if got := src.untilStale(); got != 2*time.Minute {
		t.Fatalf("after an on-demand fetch untilStale = %s, want 2m", got)
	}
	clock.Advance(2 * time.Minute)
	if got := src.untilStale(); got > 0 {
		t.Fatalf("untilStale = %s after the freshness passed, want due", got)
	}
}

func TestRemoteOversizedJWKS(t *testing.T) {
	k := jwttest.NewEd25519(t)
	big := `{"keys":[` + string(k.PublicJWK(t)) + `],"pad":"` + strings.Repeat("x", maxDocumentBytes) + `"}`
	srv := newJWKSServer(t, big)
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	err := v.WaitKeys(context.Background())
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("WaitKeys = %v, want a size error", err)
	}
	if _, err := v.Verify(context.Background(), k.Mint(t, claims(clock.Now()))); ReasonOf(err) != ReasonKeysUnavailable {
		t.Fatalf("reason = %q, want keys_unavailable", ReasonOf(err))
	}
}

func TestRemoteSkipsUnsupportedKeys(t *testing.T) {
	k := jwttest.NewEd25519(t)
	rs := jwttest.NewRS256(t)
	doc := `{"keys":[
		{"kty":"XYZ","kid":"weird"},
		{"kty":"oct","kid":"sym","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
		{"kty":"OKP","crv":"X25519","kid":"x","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"kty":"RSA","kid":"bad-alg","alg":"RS1","n":"AQAB","e":"AQAB"},
		{"kty":"EC","kid":"broken","crv":"P-256","x":"!!","y":"!!"},
		` + string(rs.PublicJWK(t)) + `,
		` + string(k.PublicJWK(t)) + `]}`
	srv := newJWKSServer(t, doc)
	m, clock, logs := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	for _, key := range []*jwttest.Key{k, rs} {
		if _, err := v.Verify(context.Background(), key.Mint(t, claims(clock.Now()))); err != nil {
			t.Fatalf("%s key next to unsupported ones: %v", key.Alg(), err)
		}
	}
	if n := strings.Count(logs.String(), "skipped key"); n != 5 {
		t.Fatalf("skipped %d keys, want 5; logs:\n%s", n, logs.String())
	}
}

func TestDiscovery(t *testing.T) {
	k := jwttest.NewEd25519(t)
	var fetches atomic.Int64
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, srv.URL, srv.URL+"/keys")
	})
	mux.HandleFunc("/other/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, srv.URL, srv.URL+"/keys") // claims to be another issuer
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_, _ = w.Write([]byte(k.JWKS()))
	})
	m, clock, _ := newTestManager(t, Options{})
	v := mustVerifier(t, m, Config{Issuer: srv.URL, Discovery: true})
	waitKeys(t, v)
	tok := k.Mint(t, claims(clock.Now(), set("iss", srv.URL)))
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if fetches.Load() != 1 {
		t.Fatalf("jwks fetches = %d", fetches.Load())
	}

	// A discovery document for another issuer is refused.
	v2 := mustVerifier(t, m, Config{Issuer: srv.URL + "/other", Discovery: true})
	if err := v2.WaitKeys(context.Background()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("foreign discovery document: %v", err)
	}
}

// TestObserver checks the metric hooks.
func TestObserver(t *testing.T) {
	k := jwttest.NewEd25519(t)
	srv := newJWKSServer(t, k.JWKS())
	obs := &countingObserver{}
	m, clock, _ := newTestManager(t, Options{Observer: obs})
	v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
	waitKeys(t, v)
	tok := k.Mint(t, claims(clock.Now()))
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = v.Verify(context.Background(), "x")
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.fetchOK != 1 || obs.hits != 2 || obs.misses != 1 {
		t.Fatalf("observer = %+v", obs)
	}
}

type countingObserver struct {
	mu                sync.Mutex // mu guards all fields
	fetchOK, fetchErr int
	hits, misses      int
}

func (o *countingObserver) JWKSFetch(_ string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.fetchErr++
	} else {
		o.fetchOK++
	}
}

func (o *countingObserver) CacheLookup(hit bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if hit {
		o.hits++
	} else {
		o.misses++
	}
}

// TestRemoteOutageRightAfterFetch: SPEC "Keys that cannot be had (... or
// the JWKS is down and the kid is unknown) are a server-side outage: 503".
// A fetch moments ago (at start, or in the background) must not throttle
// the one on-demand refresh that finds the JWKS down: an unknown kid is
// then keys_unavailable, not the token's unknown_kid. The table walks the
// ages of the last background fetch inside UnknownKidInterval.
func TestRemoteOutageRightAfterFetch(t *testing.T) {
	for _, age := range []time.Duration{0, UnknownKidInterval / 2, UnknownKidInterval - time.Millisecond} {
		t.Run(age.String(), func(t *testing.T) {
			k := jwttest.NewEd25519(t)
			srv := newJWKSServer(t, k.JWKS())
			m, clock, _ := newTestManager(t, Options{CacheSize: -1})
			v := mustVerifier(t, m, Config{Issuer: testIssuer, JWKSURI: srv.URL})
			waitKeys(t, v)
			srv.down.Store(true)
			clock.Advance(age)
			ctx := context.Background()
			unknown := jwttest.NewEd25519(t).Mint(t, claims(clock.Now()))
			if _, err := v.Verify(ctx, unknown); ReasonOf(err) != ReasonKeysUnavailable {
				t.Fatalf("unknown kid %v after the last fetch, JWKS down: %v, want keys_unavailable", age, err)
			}
			// Throttled now, it stays an outage; known keys keep working.
			if _, err := v.Verify(ctx, unknown); ReasonOf(err) != ReasonKeysUnavailable {
				t.Fatalf("unknown kid, throttled: %v, want keys_unavailable", err)
			}
			if _, err := v.Verify(ctx, k.Mint(t, claims(clock.Now()))); err != nil {
				t.Fatalf("known key during outage: %v", err)
			}
		})
	}
}
