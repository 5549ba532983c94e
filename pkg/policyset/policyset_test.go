package policyset_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

const issuer = "https://auth.example.com"

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness is a Set publishing into an engine, with a log of OnStatus calls.
type harness struct {
	t       *testing.T
	set     *policyset.Set
	engine  *decision.Engine
	key     *jwttest.Key
	secrets *secrets

	mu     sync.Mutex // mu guards events
	events map[string][]policyset.Status
}

func newHarness(t *testing.T, mods ...func(*policyset.Options)) *harness {
	t.Helper()
	h := &harness{
		t: t, key: jwttest.NewEd25519(t), secrets: &secrets{m: map[jwt.SecretRef][]byte{}},
		engine: decision.NewEngine(decision.Options{}),
		events: map[string][]policyset.Status{},
	}
	keys := jwt.NewManager(jwt.Options{CacheSize: -1, Secrets: h.secrets, SecretPollInterval: 10 * time.Millisecond})
	t.Cleanup(keys.Close)
	opts := policyset.Options{
		Keys:      keys,
		Publish:   func(s *decision.Snapshot, _ []string) { h.engine.Swap(s) },
		KeysRetry: 10 * time.Millisecond,
		OnStatus: func(ns, name string, st policyset.Status) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.events[ns+"/"+name] = append(h.events[ns+"/"+name], st)
		},
	}
	for _, m := range mods {
		m(&opts)
	}
	h.set = policyset.New(opts)
	t.Cleanup(h.set.Close)
	return h
}

// policy is an AuthPolicy created at t0+age seconds on host with prefix,
// with the rules of mods, then an anonymous rule "open" for prefix/public/**
// and a token rule "private" for everything else under prefix.
func (h *harness) policy(ns, name string, age int, host, prefix string, mods ...pt.Modifier) *v1alpha1.AuthPolicy {
	base := []pt.Modifier{
		pt.WithName(ns, name),
		pt.WithCreated(t0.Add(time.Duration(age) * time.Second)),
		pt.WithPathPrefix(prefix),
		pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = h.key.JWKS() }),
	}
	if host != "" {
		base = append(base, pt.WithHosts(host))
	}
	base = append(base, mods...)
	base = append(base,
		pt.WithRule(pt.AnonymousRule("open", strings.TrimSuffix(prefix, "/")+"/public/**")),
		pt.WithRule(v1alpha1.Rule{Name: "private"}))
	return pt.New(base...)
}

func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.set.Flush(ctx); err != nil {
		h.t.Fatalf("Flush: %v", err)
	}
}

// decide flushes and decides an anonymous GET.
func (h *harness) decide(host, path string) decision.Decision {
	h.t.Helper()
	h.flush()
	return h.engine.Decide(context.Background(), &decision.Request{Method: "GET", Host: host, Path: path, SourceIP: "192.0.2.1", Headers: map[string]string{}})
}

// expectServed asserts which policy decides an anonymous GET and whether
// it is allowed.
func (h *harness) expectServed(host, path, policy string, allowed bool) {
	h.t.Helper()
	d := h.decide(host, path)
	if d.Policy != policy || d.Allowed != allowed {
		h.t.Fatalf("GET %s%s: policy %q allowed %v (%s), want policy %q allowed %v", host, path, d.Policy, d.Allowed, d.Reason, policy, allowed)
	}
}

func (h *harness) status(key string) policyset.Status {
	h.t.Helper()
	ns, name, _ := strings.Cut(key, "/")
	st, ok := h.set.Status(ns, name)
	if !ok {
		h.t.Fatalf("no status for %s", key)
	}
	return st
}

func (h *harness) expectStatus(key, reason string, serving bool, msg ...string) policyset.Status {
	h.t.Helper()
	st := h.status(key)
	if st.Reason != reason || st.Serving != serving {
		h.t.Fatalf("%s: status %+v, want reason %s serving %v", key, st, reason, serving)
	}
	for _, m := range msg {
		if !strings.Contains(st.Message, m) {
			h.t.Fatalf("%s: message %q does not contain %q", key, st.Message, m)
		}
	}
	return st
}

// lastEvent returns the last status delivered through OnStatus for key.
func (h *harness) lastEvent(key string) (policyset.Status, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	evs := h.events[key]
	if len(evs) == 0 {
		return policyset.Status{}, false
	}
	return evs[len(evs)-1], true
}

// waitEvent polls until OnStatus has delivered reason for key.
func (h *harness) waitEvent(key, reason string) policyset.Status {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, ok := h.lastEvent(key); ok && st.Reason == reason {
			return st
		}
		if time.Now().After(deadline) {
			st, _ := h.lastEvent(key)
			h.t.Fatalf("%s: last OnStatus %+v, want reason %s", key, st, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type secrets struct {
	mu sync.Mutex
	m  map[jwt.SecretRef][]byte
}

func (s *secrets) Secret(_ context.Context, ref jwt.SecretRef) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[ref]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("secret %s: %w", ref, jwt.ErrSecretNotFound)
}

func (s *secrets) delete(ref jwt.SecretRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, ref)
}

func (s *secrets) set(ref jwt.SecretRef, v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[ref] = v
}

func TestApplyServesAndDeleteStops(t *testing.T) {
	h := newHarness(t)
	st := h.set.Apply(h.policy("shop", "a", 0, "api.example.com", "/api", pt.WithGeneration(3)))
	if !st.Ready() || !st.Serving || st.ObservedGeneration != 3 {
		t.Fatalf("status %+v, want Accepted, serving, generation 3", st)
	}
	if ev, _ := h.lastEvent("shop/a"); ev.Reason != v1alpha1.ReasonAccepted {
		t.Fatalf("OnStatus %+v, want Accepted", ev)
	}
	h.expectServed("api.example.com", "/api/public/x", "shop/a", true)
	h.expectServed("api.example.com", "/api/private", "shop/a", false)
	h.expectServed("other.example.com", "/api/public/x", "", false)

	h.set.Delete("shop", "a")
	if _, ok := h.set.Status("shop", "a"); ok {
		t.Fatal("a deleted policy still has a status")
	}
	h.expectServed("api.example.com", "/api/public/x", "", false)
}

func TestInvalidEditKeepsLastGoodVersion(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "a", 0, "api.example.com", "/api", pt.WithGeneration(1)))

	// Generation 2 breaks the owner rule: generation 1 keeps serving.
	broken := h.policy("shop", "a", 0, "api.example.com", "/api", pt.WithGeneration(2), pt.WithRule(v1alpha1.Rule{
		Name: "own", Path: "/api/users/{id}", Owner: &v1alpha1.Owner{Path: "userId"},
	}))
	st := h.set.Apply(broken)
	if st.Reason != v1alpha1.ReasonInvalidSpec || !st.Serving || st.ObservedGeneration != 2 {
		t.Fatalf("status %+v, want InvalidSpec, serving, generation 2", st)
	}
	for _, want := range []string{"spec.rules[0].owner.path", "last good version (generation 1) keeps serving"} {
		if !strings.Contains(st.Message, want) {
			t.Errorf("message %q does not contain %q", st.Message, want)
		}
	}
	h.expectServed("api.example.com", "/api/public/x", "shop/a", true)

	// Another policy still applies meanwhile.
	if st := h.set.Apply(h.policy("shop", "b", 1, "api.example.com", "/b")); !st.Ready() {
		t.Fatalf("b: %+v", st)
	}
	h.expectServed("api.example.com", "/b/public/x", "shop/b", true)

	// Fixing it serves generation 3.
	st = h.set.Apply(h.policy("shop", "a", 0, "api.example.com", "/api", pt.WithGeneration(3), pt.WithRule(pt.AnonymousRule("all", "/api/**"))))
	if !st.Ready() || st.ObservedGeneration != 3 {
		t.Fatalf("status %+v, want Accepted generation 3", st)
	}
}

func TestInvalidNewPolicyServesNothing(t *testing.T) {
	h := newHarness(t)
	st := h.set.Apply(h.policy("shop", "a", 0, "", "api")) // pathPrefix must start with "/"
	if st.Reason != v1alpha1.ReasonInvalidSpec || st.Serving {
		t.Fatalf("status %+v, want InvalidSpec, not serving", st)
	}
	if !strings.Contains(st.Message, "spec.pathPrefix") || !strings.Contains(st.Message, "not served") || strings.Contains(st.Message, "last good") {
		t.Fatalf("message %q", st.Message)
	}
	if st.Err == nil {
		t.Fatal("no Err for InvalidSpec")
	}
}

func TestInlineJWKSThatIsNotJSONIsInvalid(t *testing.T) {
	h := newHarness(t)
	st := h.set.Apply(h.policy("shop", "a", 0, "", "/", pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = "not json" })))
	if st.Reason != v1alpha1.ReasonInvalidSpec || !strings.Contains(st.Message, "spec.jwt") {
		t.Fatalf("status %+v, want InvalidSpec naming spec.jwt", st)
	}
}

// A policy whose verifier cannot be made is InvalidSpec with one "jwt: "
// prefix after the field path (issue 11 §2).
func TestKeyConfigErrorSaysJWTOnce(t *testing.T) {
	h := newHarness(t)
	st := h.set.Apply(h.policy("shop", "a", 0, "", "/", pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = `{"keys":[]}` })))
	msg, ok := strings.CutPrefix(st.Message, "spec.jwt: ")
	if st.Reason != v1alpha1.ReasonInvalidSpec || !ok || strings.Count(msg, "jwt: ") != 1 {
		t.Fatalf("status %+v, want InvalidSpec \"spec.jwt: jwt: ...\"", st)
	}
}

// Policies that differ only in the claims they forward must not share a
// verifier: a verified identity keeps only the claims its policy reads.
func TestEqualKeysDifferentClaims(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "a", 1, "a.test", "/", pt.WithJWTChange(func(j *v1alpha1.JWT) { j.ForwardClaims = map[string]string{"x-a": "a"} })))
	h.set.Apply(h.policy("shop", "b", 2, "b.test", "/", pt.WithJWTChange(func(j *v1alpha1.JWT) { j.ForwardClaims = map[string]string{"x-b": "b"} })))
	h.flush()
	token := h.key.Mint(t, func() map[string]any {
		c := jwttest.Claims("alice", issuer, "", time.Now(), time.Hour)
		c["a"], c["b"] = "1", "2"
		return c
	}())
	for host, want := range map[string]string{"a.test": "x-a", "b.test": "x-b"} {
		d := h.engine.Decide(context.Background(), &decision.Request{Method: "GET", Host: host, Path: "/x", SourceIP: "192.0.2.1",
			Headers: map[string]string{"authorization": "Bearer " + token}})
		found := false
		for _, hd := range d.UpstreamHeaders {
			found = found || hd.Name == want
		}
		if !d.Allowed || !found {
			t.Errorf("%s: allowed %v, upstream headers %v; want %s", host, d.Allowed, d.UpstreamHeaders, want)
		}
	}
}

func TestConflictsByAge(t *testing.T) {
	tests := map[string]struct {
		order []string // apply order of a (older) and b (newer)
	}{
		"the older one applied first":  {[]string{"a", "b"}},
		"the newer one applied first":  {[]string{"b", "a"}},
		"both applied twice, reversed": {[]string{"b", "a", "b", "a"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			ages := map[string]int{"a": 1, "b": 2}
			for _, n := range tc.order {
				h.set.Apply(h.policy("shop", n, ages[n], "api.example.com", "/api"))
			}
			h.expectStatus("shop/a", v1alpha1.ReasonAccepted, true)
			h.expectStatus("shop/b", v1alpha1.ReasonConflict, false, "policy shop/a already governs host api.example.com", `"/api"`)
			if ev, _ := h.lastEvent("shop/b"); ev.Reason != v1alpha1.ReasonConflict {
				t.Fatalf("last OnStatus for b %+v, want Conflict", ev)
			}
			h.expectServed("api.example.com", "/api/public/1", "shop/a", true)
		})
	}
}

func TestConflictResolvedByDeletingTheOlder(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "a", 1, "", "/api"))
	h.set.Apply(h.policy("shop", "b", 2, "", "/api", pt.WithRule(pt.AnonymousRule("b-only", "/api/b"))))
	h.set.Apply(h.policy("shop", "c", 3, "", "/api"))
	h.expectStatus("shop/b", v1alpha1.ReasonConflict, false, "shop/a")
	h.expectStatus("shop/c", v1alpha1.ReasonConflict, false, "shop/a")

	h.set.Delete("shop", "a")
	if st := h.waitEvent("shop/b", v1alpha1.ReasonAccepted); !st.Serving {
		t.Fatalf("b after delete: %+v", st)
	}
	h.expectStatus("shop/c", v1alpha1.ReasonConflict, false, "policy shop/b already governs any host")
	h.expectServed("x.test", "/api/public/1", "shop/b", true)
}

func TestConflictKeepsLastGoodVersion(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "a", 1, "", "/api"))
	h.set.Apply(h.policy("shop", "b", 2, "", "/b"))
	// b moves onto a's prefix: it conflicts and keeps serving /b.
	st := h.set.Apply(h.policy("shop", "b", 2, "", "/api"))
	if st.Reason != v1alpha1.ReasonConflict || !st.Serving || !strings.Contains(st.Message, "last good version keeps serving") {
		t.Fatalf("status %+v", st)
	}
	h.expectServed("x.test", "/b/public/1", "shop/b", true)
	h.expectServed("x.test", "/api/public/1", "shop/a", true)
	// Deleting a lets b's current version serve; /b is no longer b's.
	h.set.Delete("shop", "a")
	h.waitEvent("shop/b", v1alpha1.ReasonAccepted)
	h.expectServed("x.test", "/api/public/1", "shop/b", true)
	h.expectServed("x.test", "/b/public/1", "", false)
}

func TestDryRunDoesNotConflictWithEnforcing(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "a", 1, "", "/api"))
	if st := h.set.Apply(h.policy("shop", "dry", 2, "", "/api", pt.WithMode(v1alpha1.ModeDryRun))); !st.Ready() {
		t.Fatalf("dry-run beside an enforcing policy: %+v", st)
	}
	h.expectStatus("shop/a", v1alpha1.ReasonAccepted, true)
	h.expectServed("x.test", "/api/public/1", "shop/a", true)
	st := h.set.Apply(h.policy("shop", "dry2", 3, "", "/api", pt.WithMode(v1alpha1.ModeDryRun)))
	if st.Reason != v1alpha1.ReasonConflict || !strings.Contains(st.Message, "dryRun") {
		t.Fatalf("two dry-run policies on one slot: %+v", st)
	}
}

// evilGrab is the example: shop/tasks owns api.example.test with
// prefix /api; evil/grab names the same host with a longer prefix and an
// anonymous rule over shop's users.
func (h *harness) shopAndEvil(evilAge int) {
	h.set.Apply(h.policy("shop", "tasks", 1, "api.example.test", "/api"))
	h.set.Apply(h.policy("evil", "grab", evilAge, "api.example.test", "/api/users", pt.WithRule(pt.AnonymousRule("grab", "/api/users/**"))))
}

func TestHostOwnership(t *testing.T) {
	h := newHarness(t)
	h.shopAndEvil(2)
	h.expectStatus("shop/tasks", v1alpha1.ReasonAccepted, true)
	h.expectStatus("evil/grab", v1alpha1.ReasonConflict, false, "host api.example.test belongs to namespace shop")
	// Without a token: shop decides (401), evil never does.
	d := h.decide("api.example.test", "/api/users/bob/tasks")
	if d.Policy != "shop/tasks" || d.Allowed || d.Status != http.StatusUnauthorized {
		t.Fatalf("decision %+v, want shop/tasks 401", d)
	}

	// Another namespace's any-host and wildcard policies never decide for
	// the owned host, not even where shop has no policy.
	h.set.Apply(h.policy("evil", "anyhost", 3, "", "/other"))
	h.set.Apply(h.policy("evil", "wild", 4, "*.example.test", "/"))
	h.expectStatus("evil/anyhost", v1alpha1.ReasonAccepted, true)
	h.expectStatus("evil/wild", v1alpha1.ReasonAccepted, true)
	h.expectServed("api.example.test", "/other/public/x", "", false)
	h.expectServed("api.example.test", "/root/public/x", "", false)
	h.expectServed("www.example.test", "/public/x", "evil/wild", true)
	h.expectServed("unowned.test", "/other/public/x", "evil/anyhost", true)

	// Shop's own wildcard and any-host policies do decide for its host.
	h.set.Apply(h.policy("shop", "anyhost", 5, "", "/shop"))
	h.expectServed("api.example.test", "/shop/public/x", "shop/anyhost", true)

	// Ownership follows the oldest policy: once shop/tasks is gone, evil
	// owns the host and grab serves; shop/anyhost no longer decides there,
	// evil's wildcard does.
	h.set.Delete("shop", "tasks")
	h.waitEvent("evil/grab", v1alpha1.ReasonAccepted)
	h.expectServed("api.example.test", "/api/users/bob/tasks", "evil/grab", true)
	h.expectServed("api.example.test", "/shop/public/x", "evil/wild", false)
}

func TestHostOwnershipOlderOtherNamespaceTakesOver(t *testing.T) {
	h := newHarness(t)
	// evil/grab is applied first, but shop/tasks is older: shop owns.
	h.set.Apply(h.policy("evil", "grab", 2, "api.example.test", "/api/users"))
	h.expectStatus("evil/grab", v1alpha1.ReasonAccepted, true)
	h.set.Apply(h.policy("shop", "tasks", 1, "api.example.test", "/api"))
	if st := h.waitEvent("evil/grab", v1alpha1.ReasonConflict); st.Serving {
		t.Fatalf("evil/grab serving: %+v", st)
	}
	h.expectServed("api.example.test", "/api/users/public/x", "shop/tasks", false)
}

func TestCrossNamespaceHosts(t *testing.T) {
	h := newHarness(t, func(o *policyset.Options) { o.CrossNamespaceHosts = true })
	h.shopAndEvil(2)
	h.expectStatus("evil/grab", v1alpha1.ReasonAccepted, true)
	h.expectServed("api.example.test", "/api/users/bob/tasks", "evil/grab", true)
}

func TestSecretNotFoundThenCreated(t *testing.T) {
	h := newHarness(t)
	ref := jwt.SecretRef{Namespace: "shop", Name: "auth", Key: "jwt-secret"}
	ap := h.policy("shop", "hs", 1, "", "/api", pt.WithJWT(&v1alpha1.JWT{
		Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: "auth", Key: "jwt-secret"},
	}))
	st := h.set.Apply(ap)
	if st.Reason != v1alpha1.ReasonSecretNotFound || !st.Serving || !strings.Contains(st.Message, "shop/auth/jwt-secret") {
		t.Fatalf("status %+v, want SecretNotFound naming the secret, serving (503s, not the default action)", st)
	}
	h.secrets.set(ref, []byte(strings.Repeat("s", 32)))
	h.waitEvent("shop/hs", v1alpha1.ReasonAccepted)
}

// TestSecretDeletedIsRevoked: deleting the Secret of a policy's secretRef
// revokes its key — the policy is SecretNotFound and its tokens get the
// keys-unavailable 503 — and creating it again restores both.
func TestSecretDeletedIsRevoked(t *testing.T) {
	h := newHarness(t)
	ref := jwt.SecretRef{Namespace: "shop", Name: "auth", Key: "jwt-secret"}
	key := jwttest.NewHS256(t)
	h.secrets.set(ref, key.Secret())
	h.set.Apply(h.policy("shop", "hs", 1, "", "/api", pt.WithJWT(&v1alpha1.JWT{
		Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: "auth", Key: "jwt-secret"},
	})))
	h.expectStatus("shop/hs", v1alpha1.ReasonAccepted, true)
	token := key.Mint(t, jwttest.Claims("alice", issuer, "", time.Now(), time.Hour))
	decide := func() decision.Decision {
		h.flush()
		return h.engine.Decide(context.Background(), &decision.Request{Method: "GET", Host: "x.test", Path: "/api/x", SourceIP: "192.0.2.1",
			Headers: map[string]string{"authorization": "Bearer " + token}})
	}
	if d := decide(); !d.Allowed {
		t.Fatalf("with the Secret: %+v", d)
	}

	h.secrets.delete(ref)
	st := h.waitEvent("shop/hs", v1alpha1.ReasonSecretNotFound)
	if !st.Serving || !strings.Contains(st.Message, "shop/auth/jwt-secret") {
		t.Fatalf("after the delete: %+v, want SecretNotFound naming the Secret, serving (503s)", st)
	}
	if d := decide(); d.Status != http.StatusServiceUnavailable || d.Policy != "shop/hs" {
		t.Fatalf("a token signed with the deleted Secret: %d %s (%s), want 503 from shop/hs", d.Status, d.Reason, d.Policy)
	}

	h.secrets.set(ref, key.Secret())
	h.waitEvent("shop/hs", v1alpha1.ReasonAccepted)
	if d := decide(); !d.Allowed {
		t.Fatalf("after the Secret came back: %+v", d)
	}
}

func TestJWKSUnavailableKeepsLastGood(t *testing.T) {
	h := newHarness(t)
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, h.key.JWKS())
	}))
	t.Cleanup(srv.Close)

	h.set.Apply(h.policy("shop", "a", 1, "", "/api", pt.WithGeneration(1)))
	remote := h.policy("shop", "a", 1, "", "/api", pt.WithGeneration(2), pt.WithJWTChange(func(j *v1alpha1.JWT) {
		j.JWKS, j.JWKSURI = "", srv.URL
	}), pt.WithRule(pt.AnonymousRule("gen2", "/api/gen2")))
	h.set.Apply(remote)
	st := h.waitEvent("shop/a", v1alpha1.ReasonJWKSUnavailable)
	if !st.Serving || st.ObservedGeneration != 2 || !strings.Contains(st.Message, srv.URL) || !strings.Contains(st.Message, "generation 1") {
		t.Fatalf("status %+v", st)
	}
	// Generation 1 serves: gen2's rule is not there yet.
	h.expectServed("x.test", "/api/gen2", "shop/a", false)

	up.Store(true)
	h.waitEvent("shop/a", v1alpha1.ReasonAccepted)
	h.expectServed("x.test", "/api/gen2", "shop/a", true)
}

func TestBurstIsCoalesced(t *testing.T) {
	release := make(chan struct{})
	var builds atomic.Int32
	engine := decision.NewEngine(decision.Options{})
	h := newHarness(t, func(o *policyset.Options) {
		o.Publish = func(s *decision.Snapshot, _ []string) {
			if builds.Add(1) == 1 {
				<-release // the first publication is slow
			}
			engine.Swap(s)
		}
	})
	const n = 1000
	h.set.Apply(h.policy("shop", "p0", 0, "h0.test", "/"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go h.set.Flush(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for builds.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no publication started")
		}
		time.Sleep(time.Millisecond)
	}
	for i := 1; i < n; i++ {
		h.set.Apply(h.policy("shop", fmt.Sprintf("p%d", i), i, fmt.Sprintf("h%d.test", i), "/"))
	}
	close(release)
	h.flush()
	if got := builds.Load(); got > 3 {
		t.Fatalf("%d publications for %d applies during one slow publication, want at most 3", got, n)
	}
	if got := engine.Snapshot().Len(); got != n {
		t.Fatalf("snapshot serves %d policies, want %d", got, n)
	}
}

func TestUnchangedSpecIsNotRecompiled(t *testing.T) {
	var built atomic.Int32
	h := newHarness(t, func(o *policyset.Options) {
		o.Publish = func(*decision.Snapshot, []string) { built.Add(1) }
	})
	ap := h.policy("shop", "a", 0, "", "/")
	h.set.Apply(ap)
	h.flush()
	before := built.Load()
	h.set.Apply(ap.DeepCopy())
	h.flush()
	if built.Load() != before {
		t.Fatal("re-applying an unchanged policy published a new snapshot")
	}
}

func TestStatusesOldestFirst(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "b", 2, "", "/b"))
	h.set.Apply(h.policy("shop", "a", 1, "", "/a"))
	h.set.ApplyFrom(h.policy("shop", "f", 9, "", "/f"), policyset.Origin{File: "x.yaml"})
	var keys []string
	for _, ps := range h.set.Statuses() {
		keys = append(keys, ps.Namespace+"/"+ps.Name)
	}
	if got := strings.Join(keys, ","); got != "shop/f,shop/a,shop/b" {
		t.Fatalf("order %s, want files first, then by creationTimestamp", got)
	}
}

func TestReasonsCountsEveryPolicy(t *testing.T) {
	h := newHarness(t)
	h.set.Apply(h.policy("shop", "a", 1, "api.example.com", "/api"))
	h.set.Apply(h.policy("shop", "b", 2, "api.example.com", "/api")) // conflicts with the older a
	h.set.Apply(h.policy("shop", "c", 3, "", "/c"))
	h.set.Apply(h.policy("shop", "d", 4, "", "d")) // invalid pathPrefix
	want := map[string]int{v1alpha1.ReasonAccepted: 2, v1alpha1.ReasonConflict: 1, v1alpha1.ReasonInvalidSpec: 1}
	if got := h.set.Reasons(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reasons %v, want %v", got, want)
	}
	h.set.Delete("shop", "a") // b takes over; a is gone
	h.set.Delete("shop", "d")
	want = map[string]int{v1alpha1.ReasonAccepted: 2}
	if got := h.set.Reasons(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after deletes: reasons %v, want %v", got, want)
	}
}

// TestFileAndObjectOfOneName: a policy file and an AuthPolicy object that
// define the same namespace/name are two policies with a status each; the
// object, the newer, is a Conflict naming the file and never replaces the
// file's policy, whichever is applied first; each source deletes only its
// own.
func TestFileAndObjectOfOneName(t *testing.T) {
	for _, objectFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("object applied first %v", objectFirst), func(t *testing.T) {
			h := newHarness(t)
			file := policyset.Origin{File: "policies/shop.yaml"}
			fromFile := h.policy("shop", "a", 9, "file.test", "/api")
			object := h.policy("shop", "a", 1, "object.test", "/api")
			if objectFirst {
				h.set.Apply(object)
				h.expectServed("object.test", "/api/public/x", "shop/a", true)
			}
			h.set.ApplyFrom(fromFile, file)
			h.set.Apply(object)

			if st, _ := h.set.StatusFrom("shop", "a", file); !st.Ready() || !st.Serving {
				t.Fatalf("the file's policy: %+v, want Accepted and serving", st)
			}
			h.expectStatus("shop/a", v1alpha1.ReasonConflict, false, "also defined by the policy file policies/shop.yaml")
			if ev, _ := h.lastEvent("shop/a"); objectFirst && ev.Reason != v1alpha1.ReasonConflict {
				t.Errorf("last OnStatus for shop/a %+v, want the object's Conflict", ev)
			}
			h.expectServed("file.test", "/api/public/x", "shop/a", true)
			h.expectServed("object.test", "/api/public/x", "", false)

			// Deleting the object leaves the file's policy alone.
			h.set.Delete("shop", "a")
			h.expectServed("file.test", "/api/public/x", "shop/a", true)
			if _, ok := h.set.Status("shop", "a"); ok {
				t.Fatal("the deleted object still has a status")
			}

			// Once the file's policy is gone, the object serves.
			h.set.Apply(object)
			h.set.DeleteFrom("shop", "a", file)
			if st := h.waitEvent("shop/a", v1alpha1.ReasonAccepted); !st.Serving {
				t.Fatalf("the object after the file's policy is gone: %+v", st)
			}
			h.expectServed("object.test", "/api/public/x", "shop/a", true)
			h.expectServed("file.test", "/api/public/x", "", false)
		})
	}
}

// TestHostOwnershipThroughWildcards: a host name belongs to the namespace
// of the oldest policy whose host matcher covers it, so a namespace never
// takes a name, or carves a wildcard, out of another namespace's older
// wildcard. Status (Conflict naming the owner) and selection agree, and a
// delete re-decides.
func TestHostOwnershipThroughWildcards(t *testing.T) {
	type pol struct {
		key        string // namespace/name
		age        int
		host, path string // path is the pathPrefix
	}
	type served struct{ host, path, policy string } // policy "" for the default action
	type status struct{ reason, contains string }
	type expect struct {
		status map[string]status
		served []served
	}
	tests := map[string]struct {
		policies []pol
		cross    bool
		want     expect
		// del is deleted after want is checked, then after is checked.
		del   string
		after expect
	}{
		"a name under another namespace's older wildcard": {
			policies: []pol{{"shop/wild", 1, "*.example.com", "/"}, {"evil/api", 2, "api.example.com", "/api"}},
			want: expect{
				status: map[string]status{
					"shop/wild": {v1alpha1.ReasonAccepted, ""},
					"evil/api":  {v1alpha1.ReasonConflict, "host api.example.com is under *.example.com, which belongs to namespace shop"},
				},
				served: []served{{"api.example.com", "/api/public/x", "shop/wild"}, {"www.example.com", "/public/x", "shop/wild"}},
			},
			del: "shop/wild",
			after: expect{
				status: map[string]status{"evil/api": {v1alpha1.ReasonAccepted, ""}},
				served: []served{{"api.example.com", "/api/public/x", "evil/api"}, {"www.example.com", "/public/x", ""}},
			},
		},
		"a wildcard under another namespace's older wildcard": {
			policies: []pol{{"shop/wild", 1, "*.example.com", "/"}, {"evil/b", 2, "*.b.example.com", "/"}},
			want: expect{
				status: map[string]status{"evil/b": {v1alpha1.ReasonConflict, "host *.b.example.com is under *.example.com, which belongs to namespace shop"}},
				served: []served{{"x.b.example.com", "/public/x", "shop/wild"}, {"b.example.com", "/public/x", "shop/wild"}},
			},
			del: "shop/wild",
			after: expect{
				status: map[string]status{"evil/b": {v1alpha1.ReasonAccepted, ""}},
				served: []served{{"x.b.example.com", "/public/x", "evil/b"}, {"b.example.com", "/public/x", ""}},
			},
		},
		"an older name keeps its owner under a newer wildcard, which owns the rest": {
			policies: []pol{{"blog/api", 1, "api.example.com", "/api"}, {"shop/wild", 2, "*.example.com", "/"}},
			want: expect{
				status: map[string]status{"blog/api": {v1alpha1.ReasonAccepted, ""}, "shop/wild": {v1alpha1.ReasonAccepted, ""}},
				served: []served{
					{"api.example.com", "/api/public/x", "blog/api"},
					{"api.example.com", "/public/x", ""}, // blog's name: never shop's wildcard
					{"www.example.com", "/public/x", "shop/wild"},
				},
			},
			del: "blog/api",
			after: expect{
				served: []served{{"api.example.com", "/public/x", "shop/wild"}},
			},
		},
		"the same name applied in two namespaces, the wildcard's owner older than both": {
			policies: []pol{{"shop/wild", 1, "*.example.com", "/"}, {"blog/api", 2, "api.example.com", "/api"}, {"evil/api", 3, "api.example.com", "/api/x"}},
			want: expect{
				status: map[string]status{
					"blog/api": {v1alpha1.ReasonConflict, "belongs to namespace shop"},
					"evil/api": {v1alpha1.ReasonConflict, "belongs to namespace shop"},
				},
				served: []served{{"api.example.com", "/api/x/public/y", "shop/wild"}},
			},
			del: "shop/wild",
			after: expect{
				status: map[string]status{
					"blog/api": {v1alpha1.ReasonAccepted, ""},
					"evil/api": {v1alpha1.ReasonConflict, "host api.example.com belongs to namespace blog"},
				},
				served: []served{{"api.example.com", "/api/x/public/y", "blog/api"}},
			},
		},
		"a chain of wildcards: the oldest owns all below it": {
			policies: []pol{{"shop/wild", 1, "*.example.com", "/"}, {"evil/b", 2, "*.b.example.com", "/"}, {"other/x", 3, "x.b.example.com", "/x"}},
			want: expect{
				status: map[string]status{
					"evil/b":  {v1alpha1.ReasonConflict, "under *.example.com, which belongs to namespace shop"},
					"other/x": {v1alpha1.ReasonConflict, "under *.example.com, which belongs to namespace shop"},
				},
				served: []served{{"x.b.example.com", "/x/public/y", "shop/wild"}},
			},
			del: "shop/wild",
			after: expect{
				status: map[string]status{
					"evil/b":  {v1alpha1.ReasonAccepted, ""},
					"other/x": {v1alpha1.ReasonConflict, "under *.b.example.com, which belongs to namespace evil"},
				},
				served: []served{{"x.b.example.com", "/x/public/y", "evil/b"}},
			},
		},
		"one namespace shares its wildcard with itself": {
			policies: []pol{{"shop/wild", 1, "*.example.com", "/"}, {"shop/api", 2, "api.example.com", "/api"}, {"shop/b", 3, "*.b.example.com", "/"}},
			want: expect{
				status: map[string]status{"shop/api": {v1alpha1.ReasonAccepted, ""}, "shop/b": {v1alpha1.ReasonAccepted, ""}},
				served: []served{
					{"api.example.com", "/api/public/x", "shop/api"},
					{"api.example.com", "/public/x", "shop/wild"},
					{"x.b.example.com", "/public/x", "shop/b"},
				},
			},
		},
		"another namespace's any-host policy never decides under an owned wildcard": {
			policies: []pol{{"shop/wild", 1, "*.example.com", "/shop"}, {"evil/any", 2, "", "/"}},
			want: expect{
				status: map[string]status{"evil/any": {v1alpha1.ReasonAccepted, ""}},
				served: []served{{"api.example.com", "/public/x", ""}, {"example.org", "/public/x", "evil/any"}},
			},
		},
		"with --cross-namespace-hosts, the most specific host decides": {
			cross:    true,
			policies: []pol{{"shop/wild", 1, "*.example.com", "/"}, {"evil/api", 2, "api.example.com", "/api"}, {"evil/b", 3, "*.b.example.com", "/"}},
			want: expect{
				status: map[string]status{"evil/api": {v1alpha1.ReasonAccepted, ""}, "evil/b": {v1alpha1.ReasonAccepted, ""}},
				served: []served{{"api.example.com", "/api/public/x", "evil/api"}, {"x.b.example.com", "/public/x", "evil/b"}},
			},
		},
	}
	for name, tc := range tests {
		for _, reverse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, newest applied first %v", name, reverse), func(t *testing.T) {
				h := newHarness(t, func(o *policyset.Options) { o.CrossNamespaceHosts = tc.cross })
				order := slices.Clone(tc.policies)
				if reverse {
					slices.Reverse(order)
				}
				for _, p := range order {
					ns, n, _ := strings.Cut(p.key, "/")
					h.set.Apply(h.policy(ns, n, p.age, p.host, p.path))
				}
				check := func(e expect) {
					t.Helper()
					for key, st := range e.status {
						got := h.status(key)
						if got.Reason != st.reason || !strings.Contains(got.Message, st.contains) || got.Serving != (st.reason == v1alpha1.ReasonAccepted) {
							t.Errorf("%s: %+v, want %s %q", key, got, st.reason, st.contains)
						}
						if ev, _ := h.lastEvent(key); ev.Reason != st.reason {
							t.Errorf("%s: last OnStatus %+v, want %s", key, ev, st.reason)
						}
					}
					for _, s := range e.served {
						if d := h.decide(s.host, s.path); d.Policy != s.policy {
							t.Errorf("GET %s%s: decided by %q (%s), want %q", s.host, s.path, d.Policy, d.Reason, s.policy)
						}
					}
				}
				check(tc.want)
				if tc.del != "" {
					ns, n, _ := strings.Cut(tc.del, "/")
					h.set.Delete(ns, n)
					check(tc.after)
				}
			})
		}
	}
}

// TestHostOwnershipMatchesTheRule applies and deletes random policies
// with random ages, hosts and wildcards in three namespaces, and after
// every change compares the set with the rule computed the slow way: a
// host name is owned by the namespace of the oldest policy (of the same
// age, the first applied) whose host matcher covers it; a policy naming a
// matcher owned by another namespace is Conflict; a request is decided by
// the owning namespace's policies.
func TestHostOwnershipMatchesTheRule(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { hostOwnershipMatchesTheRule(t, seed) })
	}
}

func hostOwnershipMatchesTheRule(t *testing.T, seed uint64) {
	names := []string{"example.test", "a.example.test", "b.example.test", "x.a.example.test", "y.a.example.test", "x.b.example.test", "z.x.a.example.test"}
	var matchers []string
	for _, n := range names {
		matchers = append(matchers, n, "*."+n)
	}
	covers := func(m, host string) bool { // host: a name or a matcher
		if name, ok := strings.CutPrefix(m, "*."); ok {
			h := strings.TrimPrefix(host, "*.")
			return strings.HasSuffix(h, "."+name) || strings.HasPrefix(host, "*.") && h == name
		}
		return m == host
	}
	type pol struct {
		ns, name string
		age      int
		seen     int // the step that applied it: a tie on age goes to the first applied
		hosts    []string
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	h := newHarness(t)
	live := map[string]pol{}
	for step := range 300 {
		key := fmt.Sprintf("ns%d/p%d", rng.IntN(3), rng.IntN(12))
		ns, name, _ := strings.Cut(key, "/")
		// Each policy holds one version (an edit would keep its last good
		// one, whose hosts count too): a live policy is deleted.
		if _, ok := live[key]; ok {
			h.set.Delete(ns, name)
			delete(live, key)
		} else {
			p := pol{ns: ns, name: name, age: rng.IntN(50), seen: step}
			for range 1 + rng.IntN(2) {
				if m := matchers[rng.IntN(len(matchers))]; !slices.Contains(p.hosts, m) {
					p.hosts = append(p.hosts, m)
				}
			}
			live[key] = p
			h.set.Apply(h.policy(ns, name, p.age, "", "/"+name, pt.WithHosts(p.hosts...)))
		}

		older := func(a, b pol) bool {
			if a.age != b.age {
				return a.age < b.age
			}
			return a.seen < b.seen
		}
		// owner returns the namespace of the oldest policy naming a
		// matcher that covers host.
		owner := func(host string) string {
			var best *pol
			for _, p := range live {
				for _, m := range p.hosts {
					if covers(m, host) && (best == nil || older(p, *best)) {
						best = &p
					}
				}
			}
			if best == nil {
				return ""
			}
			return best.ns
		}
		for key, p := range live {
			conflict := false
			for _, m := range p.hosts {
				conflict = conflict || owner(m) != p.ns
			}
			st := h.status(key)
			if (st.Reason == v1alpha1.ReasonConflict) != conflict || st.Serving == conflict {
				t.Fatalf("step %d: %s %v (age %d): status %+v, want conflict %v; policies %v", step, key, p.hosts, p.age, st, conflict, live)
			}
		}
		for _, n := range names {
			host := "q." + n
			want := owner(host)
			d := h.decide(host, "/")
			if got, _, _ := strings.Cut(d.Policy, "/"); d.Policy != "" && got != want {
				t.Fatalf("step %d: GET %s decided by %s, the host belongs to %q; policies %v", step, host, d.Policy, want, live)
			}
			for key, p := range live {
				// A policy of the owner naming a matcher that covers host,
				// Accepted, decides its own prefix there (ns0/p3 at /p3).
				if p.ns != want || h.status(key).Reason != v1alpha1.ReasonAccepted || !slices.ContainsFunc(p.hosts, func(m string) bool { return covers(m, host) }) {
					continue
				}
				if d := h.decide(host, "/"+p.name+"/public/x"); d.Policy == "" {
					t.Fatalf("step %d: GET %s/%s/public/x decided by no policy; %s names a matcher covering it; policies %v", step, host, p.name, key, live)
				}
			}
		}
	}
}

// TestHostOwnershipFollowsFileOrder: policies from files are as old as
// their file's place; a wildcard whose file moves ahead of another
// namespace's name under it takes that name over, and gives it back when
// it moves behind again.
func TestHostOwnershipFollowsFileOrder(t *testing.T) {
	h := newHarness(t)
	wild := h.policy("shop", "wild", 0, "*.example.com", "/")
	h.set.ApplyFrom(h.policy("blog", "api", 0, "api.example.com", "/api"), policyset.Origin{File: "b.yaml"})
	h.set.ApplyFrom(wild, policyset.Origin{File: "c.yaml"})
	if st, _ := h.set.StatusFrom("blog", "api", policyset.Origin{File: "b.yaml"}); !st.Ready() {
		t.Fatalf("blog/api before shop's wildcard: %+v", st)
	}
	h.expectServed("api.example.com", "/api/public/x", "blog/api", true)

	h.set.ApplyFrom(wild, policyset.Origin{File: "a.yaml"})
	if st, _ := h.set.StatusFrom("blog", "api", policyset.Origin{File: "b.yaml"}); st.Reason != v1alpha1.ReasonConflict || !strings.Contains(st.Message, "under *.example.com, which belongs to namespace shop") {
		t.Fatalf("blog/api after shop's wildcard moved ahead: %+v", st)
	}
	h.expectServed("api.example.com", "/api/public/x", "shop/wild", false) // shop/wild needs a token there

	h.set.ApplyFrom(wild, policyset.Origin{File: "c.yaml"})
	if st, _ := h.set.StatusFrom("blog", "api", policyset.Origin{File: "b.yaml"}); !st.Ready() {
		t.Fatalf("blog/api after shop's wildcard moved behind: %+v", st)
	}
	h.expectServed("api.example.com", "/api/public/x", "blog/api", true)
}

// TestPublishListsChangedPolicies: every publication lists the policies
// whose served version changed (added, replaced, removed), and only them,
// whether the snapshot was updated or rebuilt.
func TestPublishListsChangedPolicies(t *testing.T) {
	type publication struct{ changed, served []string }
	var mu sync.Mutex
	var pubs []publication
	h := newHarness(t, func(o *policyset.Options) {
		o.Publish = func(s *decision.Snapshot, changed []string) {
			var served []string
			for _, p := range s.Policies() {
				served = append(served, p.Key())
			}
			slices.Sort(served)
			mu.Lock()
			defer mu.Unlock()
			pubs = append(pubs, publication{changed: slices.Sorted(slices.Values(changed)), served: served})
		}
	})
	burst := func(and string) []string { // burst/0..23 and one more key, sorted
		keys := []string{and}
		for i := range 24 {
			keys = append(keys, fmt.Sprintf("burst/%d", i))
		}
		return slices.Sorted(slices.Values(keys))
	}
	last := func() publication {
		mu.Lock()
		defer mu.Unlock()
		return pubs[len(pubs)-1]
	}
	steps := []struct {
		name          string
		change        func()
		changed, want []string
	}{
		{"the first publication lists every policy", func() {
			h.set.Apply(h.policy("shop", "a", 1, "", "/a"))
			h.set.Apply(h.policy("shop", "b", 2, "", "/b"))
		}, []string{"shop/a", "shop/b"}, []string{"shop/a", "shop/b"}},
		{"a policy added", func() { h.set.Apply(h.policy("shop", "c", 3, "", "/c")) },
			[]string{"shop/c"}, []string{"shop/a", "shop/b", "shop/c"}},
		{"a policy replaced", func() {
			h.set.Apply(h.policy("shop", "b", 2, "", "/b", pt.WithRule(pt.AnonymousRule("more", "/b/more"))))
		}, []string{"shop/b"}, []string{"shop/a", "shop/b", "shop/c"}},
		{"a policy deleted and the one it held back served", func() {
			h.set.Apply(h.policy("shop", "d", 4, "", "/a")) // a conflict with a
			h.set.Delete("shop", "a")
		}, []string{"shop/a", "shop/d"}, []string{"shop/b", "shop/c", "shop/d"}},
		{"a burst that rebuilds the snapshot", func() {
			for i := range 24 {
				h.set.Apply(h.policy("burst", fmt.Sprint(i), 10+i, "", fmt.Sprintf("/burst/%d", i)))
			}
			h.set.Delete("shop", "c")
		}, burst("shop/c"), append(burst("shop/b"), "shop/d")},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			st.change()
			h.flush()
			got := last()
			if !slices.Equal(got.changed, st.changed) || !slices.Equal(got.served, st.want) {
				t.Fatalf("published changed %q serving %q, want changed %q serving %q", got.changed, got.served, st.changed, st.want)
			}
		})
	}
}
