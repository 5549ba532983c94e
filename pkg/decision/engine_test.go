package decision_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

const issuer = "https://auth.example.com"

// fixture is an engine serving the tasks scenario with an inline JWKS.
type fixture struct {
	engine *decision.Engine
	key    *jwttest.Key
	quota  *ratelimit.Memory
}

func tasksPolicy(key *jwttest.Key, mods ...pt.Modifier) *v1alpha1.AuthPolicy {
	own := pt.OwnTasksRule()
	own.Limits = []v1alpha1.Limit{{Name: "per-user", Requests: 3, Period: "15m", By: "user",
		Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 5}}}}}
	base := []pt.Modifier{
		pt.WithPathPrefix("/api"),
		pt.WithJWTChange(func(j *v1alpha1.JWT) {
			j.JWKS = key.JWKS()
			j.ForwardClaims = map[string]string{"x-user-id": "sub", "x-user-plan": "plan"}
		}),
		pt.WithLimit(v1alpha1.Limit{Name: "per-ip", Requests: 100, Period: "15m", By: "ip"}),
		pt.WithRule(v1alpha1.Rule{Name: "health", Path: "/api/health", Anonymous: true}),
		pt.WithRule(own),
		pt.WithRule(v1alpha1.Rule{Name: "profile", Methods: []string{"GET"}, Path: "/api/me"}),
	}
	return pt.New(append(base, mods...)...)
}

func newFixture(t testing.TB, opts decision.Options, policies ...*v1alpha1.AuthPolicy) *fixture {
	t.Helper()
	key := jwttest.NewEd25519(t)
	if len(policies) == 0 {
		policies = []*v1alpha1.AuthPolicy{tasksPolicy(key)}
	}
	f := &fixture{key: key}
	if opts.Quota == nil {
		f.quota = ratelimit.NewMemory(ratelimit.MemoryOptions{})
		t.Cleanup(func() { f.quota.Close() })
		opts.Quota = f.quota
	}
	f.engine = decision.NewEngine(opts)
	f.load(t, policies...)
	return f
}

// load serves aps through a policy set, as serve does; aps are given
// oldest first and must all be accepted.
func (f *fixture) load(t testing.TB, aps ...*v1alpha1.AuthPolicy) {
	t.Helper()
	m := jwt.NewManager(jwt.Options{})
	t.Cleanup(m.Close)
	set := policyset.New(policyset.Options{Keys: m, Publish: func(s *decision.Snapshot, _ []string) { f.engine.Swap(s) }})
	t.Cleanup(set.Close)
	for i, ap := range aps {
		if st := set.ApplyFrom(ap, policyset.Origin{File: "test", Doc: i}); !st.Ready() {
			t.Fatalf("policy %s/%s: %s: %s", ap.Namespace, ap.Name, st.Reason, st.Message)
		}
	}
	if err := set.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) token(t testing.TB, sub string, extra map[string]any) string {
	claims := jwttest.Claims(sub, issuer, "", time.Now(), time.Hour)
	for k, v := range extra {
		claims[k] = v
	}
	return f.key.Mint(t, claims)
}

func request(method, path, token string, headers ...string) *decision.Request {
	r := &decision.Request{Method: method, Host: "api.example.com", Path: path, SourceIP: "192.0.2.1", Headers: map[string]string{}}
	if token != "" {
		r.Headers["authorization"] = "Bearer " + token
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers[headers[i]] = headers[i+1]
	}
	return r
}

func header(hs []decision.Header, name string) (string, bool) {
	for _, h := range hs {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}

func TestDecide(t *testing.T) {
	f := newFixture(t, decision.Options{})
	alice := f.token(t, "alice", map[string]any{"plan": "free"})
	admin := f.token(t, "root", map[string]any{"role": "admin"})
	other := jwttest.NewEd25519(t).Mint(t, jwttest.Claims("alice", issuer, "", time.Now(), time.Hour))
	expired := f.key.Mint(t, jwttest.Claims("alice", issuer, "", time.Now().Add(-2*time.Hour), time.Hour))

	tests := map[string]struct {
		req    *decision.Request
		status int
		code   string
		reason string
		rule   string
	}{
		"alice reads her own tasks":              {request("GET", "/api/users/alice/tasks", alice), 200, "", decision.ReasonAllowed, "own-tasks"},
		"alice reads one of her tasks":           {request("DELETE", "/api/users/alice/tasks/42", alice), 200, "", decision.ReasonAllowed, "own-tasks"},
		"alice cannot read bob's tasks":          {request("GET", "/api/users/bob/tasks", alice), 403, decision.CodeForbidden, decision.ReasonOwnerMismatch, "own-tasks"},
		"dot segments cannot reach bob's tasks":  {request("GET", "/api/users/alice/../bob/tasks", alice), 400, decision.CodeBadRequest, decision.ReasonInvalidPath, ""},
		"an admin reads bob's tasks":             {request("GET", "/api/users/bob/tasks", admin), 200, "", decision.ReasonAllowed, "own-tasks"},
		"health needs no token":                  {request("GET", "/api/health", ""), 200, "", decision.ReasonAllowed, "health"},
		"a missing token is 401":                 {request("GET", "/api/users/alice/tasks", ""), 401, decision.CodeUnauthenticated, "missing", "own-tasks"},
		"a token of another key is 401":          {request("GET", "/api/users/alice/tasks", other), 401, decision.CodeUnauthenticated, "unknown_kid", "own-tasks"},
		"an expired token is 401":                {request("GET", "/api/users/alice/tasks", expired), 401, decision.CodeUnauthenticated, "expired", "own-tasks"},
		"garbage in the header is 401":           {request("GET", "/api/me", "not.a.jwt"), 401, decision.CodeUnauthenticated, "malformed", "profile"},
		"a basic credential is a missing token":  {request("GET", "/api/me", "", "authorization", "Basic YWxpY2U6eA=="), 401, decision.CodeUnauthenticated, "missing", "profile"},
		"an encoded slash is 400":                {request("GET", "/api/users/alice%2F..%2Fbob/tasks", alice), 400, decision.CodeBadRequest, decision.ReasonInvalidPath, ""},
		"a backslash is 400":                     {request("GET", "/api/users/alice\\tasks", alice), 400, decision.CodeBadRequest, decision.ReasonInvalidPath, ""},
		"a method no rule allows is 403":         {request("POST", "/api/me", alice), 403, decision.CodeForbidden, decision.ReasonNoRule, ""},
		"a path no rule matches is 403":          {request("GET", "/api/admin", alice), 403, decision.CodeForbidden, decision.ReasonNoRule, ""},
		"a path outside every policy is 403":     {request("GET", "/other", alice), 403, decision.CodeForbidden, decision.ReasonNoPolicy, ""},
		"the prefix is matched by segment":       {request("GET", "/apix/users/alice/tasks", alice), 403, decision.CodeForbidden, decision.ReasonNoPolicy, ""},
		"an unknown explicit policy is 403":      {&decision.Request{Method: "GET", Host: "api.example.com", Path: "/api/health", PolicyKey: "shop/nope"}, 403, decision.CodeForbidden, decision.ReasonUnknownPolicy, ""},
		"the prefix is case-sensitive":           {request("GET", "/API/users/alice/tasks", alice), 403, decision.CodeForbidden, decision.ReasonNoPolicy, ""},
		"a lower-case bearer scheme is accepted": {request("GET", "/api/me", "", "authorization", "bearer "+alice), 200, "", decision.ReasonAllowed, "profile"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), tc.req)
			if d.Status != tc.status || d.Code != tc.code || d.Reason != tc.reason || d.Rule != tc.rule {
				t.Fatalf("got %d %q %q rule %q, want %d %q %q rule %q", d.Status, d.Code, d.Reason, d.Rule, tc.status, tc.code, tc.reason, tc.rule)
			}
			if d.Allowed != (tc.status == 200) {
				t.Errorf("Allowed = %v with status %d", d.Allowed, d.Status)
			}
			challenge, ok := header(d.ResponseHeaders, "www-authenticate")
			if (tc.status == 401) != ok || (ok && !strings.HasPrefix(challenge, `Bearer realm="tollgate"`)) {
				t.Errorf("www-authenticate = %q, %v", challenge, ok)
			}
			if !d.Allowed {
				body := d.Body()
				if !strings.Contains(body, `"error":"`+tc.code+`"`) || !strings.Contains(body, `"message":`) {
					t.Errorf("body %s", body)
				}
				if token := tc.req.Headers["authorization"]; token != "" && strings.Contains(body+d.Message, strings.TrimPrefix(token, "Bearer ")) {
					t.Errorf("deny echoes the token")
				}
			}
		})
	}
}

func TestDecideIdentityHeadersCannotBeSpoofed(t *testing.T) {
	f := newFixture(t, decision.Options{})
	alice := f.token(t, "alice", nil) // no plan claim
	d := f.engine.Decide(context.Background(), request("GET", "/api/users/alice/tasks", alice, "x-user-id", "bob", "x-user-plan", "premium"))
	if !d.Allowed {
		t.Fatalf("denied: %+v", d)
	}
	if v, _ := header(d.UpstreamHeaders, "x-user-id"); v != "alice" {
		t.Errorf("x-user-id = %q, want alice", v)
	}
	if _, set := header(d.UpstreamHeaders, "x-user-plan"); set || !slices.Contains(d.RemoveHeaders, "x-user-plan") {
		t.Errorf("x-user-plan: set %v, removed %v; the client's copy must be removed", set, d.RemoveHeaders)
	}
	if d.Subject != "alice" || d.Policy != "shop/tasks-api" {
		t.Errorf("subject %q policy %q", d.Subject, d.Policy)
	}
}

func TestDecideNeverForwardsControlCharacters(t *testing.T) {
	f := newFixture(t, decision.Options{})
	token := f.token(t, "alice", map[string]any{"plan": "gold\r\nx-admin: true"})
	d := f.engine.Decide(context.Background(), request("GET", "/api/users/alice/tasks", token, "x-user-plan", "spoofed"))
	if !d.Allowed {
		t.Fatalf("denied: %+v", d)
	}
	if v, set := header(d.UpstreamHeaders, "x-user-plan"); set || !slices.Contains(d.RemoveHeaders, "x-user-plan") {
		t.Errorf("x-user-plan set to %q (removed: %v); a claim with CR LF must not become a header", v, d.RemoveHeaders)
	}
}

func TestDecideQuota(t *testing.T) {
	f := newFixture(t, decision.Options{})
	alice := f.token(t, "alice", nil)
	bob := f.token(t, "bob", map[string]any{"plan": "premium"})
	carol := f.token(t, "carol", map[string]any{"plan": "premium"})
	decide := func(sub, token string) decision.Decision {
		return f.engine.Decide(context.Background(), request("GET", "/api/users/"+sub+"/tasks", token))
	}
	for i := range 3 {
		d := decide("alice", alice)
		if !d.Allowed {
			t.Fatalf("request %d denied: %+v", i+1, d)
		}
		if got, _ := header(d.ResponseHeaders, decision.HeaderRemaining); got != []string{"2", "1", "0"}[i] {
			t.Errorf("request %d: remaining %q", i+1, got)
		}
		if got, _ := header(d.ResponseHeaders, decision.HeaderLimit); got != "3" {
			t.Errorf("request %d: limit %q, want the tightest limit (3)", i+1, got)
		}
	}
	d := decide("alice", alice)
	if d.Status != http.StatusTooManyRequests || d.Code != decision.CodeRateLimited {
		t.Fatalf("4th request: %+v", d)
	}
	for _, name := range []string{decision.HeaderLimit, decision.HeaderRemaining, decision.HeaderReset, decision.HeaderRetryAfter} {
		if _, ok := header(d.ResponseHeaders, name); !ok {
			t.Errorf("429 lacks %s: %v", name, d.ResponseHeaders)
		}
	}
	if v, _ := header(d.ResponseHeaders, decision.HeaderRemaining); v != "0" {
		t.Errorf("429 remaining = %q", v)
	}
	// Premium users get the tier's limit, each their own counter.
	for _, tc := range []struct{ sub, token string }{{"bob", bob}, {"carol", carol}} {
		for i := range 5 {
			if d := decide(tc.sub, tc.token); !d.Allowed {
				t.Fatalf("%s request %d denied: %+v", tc.sub, i+1, d)
			}
		}
		if d := decide(tc.sub, tc.token); d.Allowed {
			t.Fatalf("%s's 6th request allowed", tc.sub)
		}
	}
}

func TestDecidePolicySelection(t *testing.T) {
	key := jwttest.NewEd25519(t)
	anon := func(name string, mods ...pt.Modifier) *v1alpha1.AuthPolicy {
		return pt.New(append([]pt.Modifier{pt.WithName("shop", name), pt.WithJWT(nil), pt.WithRule(v1alpha1.Rule{Name: name, Anonymous: true})}, mods...)...)
	}
	f := newFixture(t, decision.Options{},
		anon("any-root"),
		anon("any-api", pt.WithPathPrefix("/api")),
		anon("wild", pt.WithHosts("*.example.com")),
		anon("deep-wild", pt.WithHosts("*.eu.example.com")),
		anon("exact", pt.WithHosts("api.example.com")),
		anon("exact-v2", pt.WithHosts("api.example.com"), pt.WithPathPrefix("/v2")),
		tasksPolicy(key, pt.WithName("shop", "tasks"), pt.WithHosts("tasks.internal")),
	)
	tests := map[string]struct {
		host, path, policyKey, want string
	}{
		"an exact host wins over wildcard and any": {"api.example.com", "/x", "", "shop/exact"},
		"the longest prefix wins for one host":     {"api.example.com:443", "/v2/x", "", "shop/exact-v2"},
		"a wildcard host wins over any":            {"www.example.com", "/x", "", "shop/wild"},
		"the longest wildcard wins":                {"api.eu.example.com", "/x", "", "shop/deep-wild"},
		"any host with the longest prefix":         {"other.org", "/api/x", "", "shop/any-api"},
		"any host at the root":                     {"other.org", "/x", "", "shop/any-root"},
		"context_extensions selects a policy":      {"api.example.com", "/x", "shop/any-api", "shop/any-api"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), &decision.Request{Method: "GET", Host: tc.host, Path: tc.path, PolicyKey: tc.policyKey})
			if d.Policy != tc.want || !d.Allowed {
				t.Fatalf("policy %q allowed %v, want %q", d.Policy, d.Allowed, tc.want)
			}
		})
	}
}

func TestDecideDefaultAllow(t *testing.T) {
	f := newFixture(t, decision.Options{DefaultAllow: true})
	d := f.engine.Decide(context.Background(), request("GET", "/elsewhere", "", "x-user-id", "bob"))
	if !d.Allowed || d.Reason != decision.ReasonDefaultAllowed {
		t.Fatalf("default allow: %+v", d)
	}
	if !slices.Contains(d.RemoveHeaders, "x-user-id") {
		t.Errorf("default allow keeps the client's x-user-id: remove %v", d.RemoveHeaders)
	}
}

func TestDecideExplain(t *testing.T) {
	f := newFixture(t, decision.Options{})
	req := request("GET", "/api/users/bob/tasks", f.token(t, "alice", nil))
	req.Explain = true
	d := f.engine.Decide(context.Background(), req)
	var names []string
	for _, s := range d.Steps {
		names = append(names, s.Name+":"+s.Outcome)
	}
	want := []string{"path:ok", "policy:ok", "rule:ok", "token:ok", "owner:deny"}
	if !slices.Equal(names, want) {
		t.Fatalf("steps %v, want %v", names, want)
	}
}

func TestDecideOwnerFromQueryAndHeader(t *testing.T) {
	f := newFixture(t, decision.Options{})
	f.load(t, pt.New(
		pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = f.key.JWKS() }),
		pt.WithRule(v1alpha1.Rule{Name: "by-query", Path: "/q", Owner: &v1alpha1.Owner{Query: "user"}}),
		pt.WithRule(v1alpha1.Rule{Name: "by-header", Path: "/h", Owner: &v1alpha1.Owner{Header: "X-Owner"}}),
	))
	alice := f.token(t, "alice", nil)
	tests := map[string]struct {
		path    string
		headers []string
		status  int
		reason  string
	}{
		"the query names the caller":                  {"/q?user=alice", nil, 200, decision.ReasonAllowed},
		"an escaped query value is compared decoded":  {"/q?user=al%69ce", nil, 200, decision.ReasonAllowed},
		"the query names someone else":                {"/q?user=bob", nil, 403, decision.ReasonOwnerMismatch},
		"a repeated equal value is fine":              {"/q?user=alice&user=alice", nil, 200, decision.ReasonAllowed},
		"a second, different value is ambiguous":      {"/q?user=alice&user=bob", nil, 403, decision.ReasonOwnerMissing},
		"a missing parameter names nobody":            {"/q?other=alice", nil, 403, decision.ReasonOwnerMissing},
		"the header names the caller":                 {"/h", []string{"x-owner", "alice"}, 200, decision.ReasonAllowed},
		"a header joined from two values never match": {"/h", []string{"x-owner", "alice,bob"}, 403, decision.ReasonOwnerMismatch},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), request("GET", tc.path, alice, tc.headers...))
			if d.Status != tc.status || d.Reason != tc.reason {
				t.Fatalf("got %d %s, want %d %s", d.Status, d.Reason, tc.status, tc.reason)
			}
		})
	}
}
