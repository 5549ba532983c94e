package decision_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// unlimitedPolicy is the tasks scenario without limits, for tests that
// send many requests as one user.
func unlimitedPolicy(key *jwttest.Key, mods ...pt.Modifier) *v1alpha1.AuthPolicy {
	base := []pt.Modifier{
		pt.WithPathPrefix("/api"),
		pt.WithJWTChange(func(j *v1alpha1.JWT) {
			j.JWKS = key.JWKS()
			j.ForwardClaims = map[string]string{"x-user-id": "sub", "x-user-plan": "plan"}
		}),
		pt.WithRule(v1alpha1.Rule{Name: "health", Path: "/api/health", Anonymous: true}),
		pt.WithRule(pt.OwnTasksRule()),
		pt.WithRule(v1alpha1.Rule{Name: "profile", Methods: []string{"GET"}, Path: "/api/me"}),
	}
	return pt.New(append(base, mods...)...)
}

// TestDecidePathForms checks that the path tollgate matches is the path
// every backend routes: by default a path not in normal form is denied
// 400, whoever it would name; with NormalizePaths it is resolved in RFC
// 3986 order, and what routers resolve differently is still denied.
func TestDecidePathForms(t *testing.T) {
	strict := newFixture(t, decision.Options{})
	strict.load(t, unlimitedPolicy(strict.key))
	normalizing := newFixture(t, decision.Options{NormalizePaths: true})
	normalizing.key = strict.key
	normalizing.load(t, unlimitedPolicy(strict.key))
	alice := strict.token(t, "alice", nil)

	tests := map[string]struct {
		path              string
		strict, normalize int
	}{
		"a normal path":                              {"/api/users/alice/tasks", 200, 200},
		"a normal path with a query":                 {"/api/users/alice/tasks?x=/../../bob", 200, 200},
		"a dot-dot to the caller's own tasks":        {"/api/users/bob/../alice/tasks", 400, 200},
		"a dot-dot to another user's tasks":          {"/api/users/alice/../bob/tasks", 400, 403},
		"a dot segment":                              {"/api/users/alice/./tasks", 400, 200},
		"an encoded dot-dot":                         {"/api/users/alice/%2e%2e/bob/tasks", 400, 403},
		"an upper-case encoded dot-dot":              {"/api/users/alice/%2E%2E/bob/tasks", 400, 403},
		"a mixed encoded dot-dot":                    {"/api/users/alice/.%2E/bob/tasks", 400, 403},
		"a trailing dot-dot":                         {"/api/users/alice/tasks/42/..", 400, 200},
		"a double slash":                             {"/api//users/alice/tasks", 400, 200},
		"a leading double slash":                     {"//api/users/alice/tasks", 400, 200},
		"the triple-slash owner switch":              {"/api/users/bob/tasks///../../alice/tasks", 400, 400},
		"a dot-dot after an empty segment":           {"/api/users/bob//../alice/tasks", 400, 400},
		"an encoded dot-dot after an empty segment":  {"/api/users/bob//%2e%2e/alice/tasks", 400, 400},
		"an encoded letter":                          {"/api/users/%61lice/tasks", 400, 200},
		"an encoded tilde":                           {"/api/users/alice/tasks/%7E", 400, 200},
		"an encoded slash":                           {"/api/users/alice%2Ftasks", 400, 400},
		"an encoded backslash":                       {"/api/users/alice%5ctasks", 400, 400},
		"a raw backslash":                            {"/api/users/alice\\tasks", 400, 400},
		"an encoded NUL":                             {"/api/users/alice%00/tasks", 400, 400},
		"a raw NUL":                                  {"/api/users/alice\x00/tasks", 400, 400},
		"an invalid escape":                          {"/api/users/alice%zz/tasks", 400, 400},
		"a dot-dot with a parameter":                 {"/api/users/bob/..;/alice/tasks", 400, 400},
		"an encoded dot-dot with a parameter":        {"/api/users/bob/%2e%2e%3b/alice/tasks", 400, 400},
		"a lower-case reserved escape is a spelling": {"/api/users/alice/tasks/a%3ab", 200, 200},
		// Encodings that a lenient backend reads as a dot or a separator:
		// alice's tasks to tollgate, bob's to such a backend.
		"an overlong dot-dot out of own tasks": {"/api/users/alice/tasks/%C0%AE%C0%AE/%C0%AE%C0%AE/bob/tasks", 400, 400},
		"a lower-case overlong dot-dot":        {"/api/users/alice/tasks/%c0%ae%c0%ae/%c0%ae%c0%ae/bob/tasks", 400, 400},
		"an overlong slash":                    {"/api/users/alice/tasks/..%C0%AF..%C0%AFbob%C0%AFtasks", 400, 400},
		"a 3-byte overlong dot-dot":            {"/api/users/alice/tasks/%E0%80%AE%E0%80%AE/%E0%80%AE%E0%80%AE/bob/tasks", 400, 400},
		"a 4-byte overlong dot-dot":            {"/api/users/alice/tasks/%F0%80%80%AE%F0%80%80%AE/x", 400, 400},
		"a raw overlong dot-dot":               {"/api/users/alice/tasks/\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/bob/tasks", 400, 400},
		"a double-encoded dot-dot":             {"/api/users/alice/tasks/%252e%252e/%252E%252E/bob/tasks", 400, 400},
		"a double-encoded slash":               {"/api/users/alice/tasks/..%252f..%252Fbob%252ftasks", 400, 400},
		"a double-encoded backslash":           {"/api/users/alice/tasks/..%255c..%255Cbob%255ctasks", 400, 400},
		"an encoded percent is a percent":      {"/api/users/alice/tasks/100%25", 200, 200},
		"valid UTF-8 is a name":                {"/api/users/alice/tasks/caf%C3%A9/%E2%82%AC/%F0%9F%98%80", 200, 200},
		"a Latin-1 byte is a name":             {"/api/users/alice/tasks/caf%E9", 200, 200},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, f := range []struct {
				name string
				fx   *fixture
				want int
			}{{"strict", strict, tc.strict}, {"normalize", normalizing, tc.normalize}} {
				d := f.fx.engine.Decide(context.Background(), request("GET", tc.path, alice))
				if d.Status != f.want {
					t.Errorf("%s: %q: status %d (%s), want %d", f.name, tc.path, d.Status, d.Reason, f.want)
				}
				if f.want == 400 && (d.Reason != decision.ReasonInvalidPath || d.Code != decision.CodeBadRequest) {
					t.Errorf("%s: %q: reason %q code %q, want %q %q", f.name, tc.path, d.Reason, d.Code, decision.ReasonInvalidPath, decision.CodeBadRequest)
				}
			}
		})
	}
}

// TestDecideQueryEndsAtFragment checks that a "?" after a "#" starts no
// query: "/files#?owner=alice" names no owner.
func TestDecideQueryEndsAtFragment(t *testing.T) {
	f := newFixture(t, decision.Options{})
	f.load(t, pt.New(
		pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = f.key.JWKS() }),
		pt.WithRule(v1alpha1.Rule{Name: "files", Path: "/api/files", Owner: &v1alpha1.Owner{Query: "owner"}}),
	))
	alice := f.token(t, "alice", nil)
	tests := map[string]struct {
		path   string
		status int
		reason string
	}{
		"a query names the owner":                 {"/api/files?owner=alice", 200, decision.ReasonAllowed},
		"a fragment is no query":                  {"/api/files#?owner=alice", 403, decision.ReasonOwnerMissing},
		"a fragment after the query is dropped":   {"/api/files?owner=alice#&owner=bob", 200, decision.ReasonAllowed},
		"a query inside the fragment is no query": {"/api/files?x=1#?owner=alice", 403, decision.ReasonOwnerMissing},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), request("GET", tc.path, alice))
			if d.Status != tc.status || d.Reason != tc.reason {
				t.Fatalf("%q: %d %s, want %d %s", tc.path, d.Status, d.Reason, tc.status, tc.reason)
			}
		})
	}
}
