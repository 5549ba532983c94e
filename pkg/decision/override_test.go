package decision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestDecideMethodOverride checks that a request carrying a method
// override (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, a
// _method query parameter) is allowed only when it is also allowed for the
// method the override names.
func TestDecideMethodOverride(t *testing.T) {
	f := newFixture(t, decision.Options{})
	own := func(name string, methods ...string) v1alpha1.Rule {
		r := pt.OwnTasksRule()
		r.Name, r.Methods, r.Owner.AllowIf = name, methods, nil
		return r
	}
	f.load(t, pt.New(
		pt.WithPathPrefix("/api"),
		pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = f.key.JWKS() }),
		pt.WithRule(v1alpha1.Rule{Name: "comments", Methods: []string{"POST"}, Path: "/api/comments", Anonymous: true}),
		pt.WithRule(v1alpha1.Rule{Name: "health", Methods: []string{"GET"}, Path: "/api/health", Anonymous: true}),
		pt.WithRule(v1alpha1.Rule{Name: "submit", Methods: []string{"POST"}, Path: "/api/users/{userId}/tasks", Anonymous: true}),
		pt.WithRule(own("read", "GET")),
		pt.WithRule(own("delete", "DELETE")),
	))
	alice := f.token(t, "alice", nil)
	bob := f.token(t, "bob", nil)
	tests := map[string]struct {
		method, path, token string
		headers             []string
		status              int
		reason              string
	}{
		"no override": {"POST", "/api/comments", "", nil, 200, decision.ReasonAllowed},
		"X-HTTP-Method-Override to a denied method": {"POST", "/api/comments", "", []string{"x-http-method-override", "DELETE"}, 403, decision.ReasonMethodOverride},
		"X-HTTP-Method to a denied method":          {"POST", "/api/comments", "", []string{"x-http-method", "DELETE"}, 403, decision.ReasonMethodOverride},
		"X-Method-Override to a denied method":      {"POST", "/api/comments", "", []string{"x-method-override", "DELETE"}, 403, decision.ReasonMethodOverride},
		"a lower-case override":                     {"POST", "/api/comments", "", []string{"x-http-method-override", "delete"}, 403, decision.ReasonMethodOverride},
		"an override among several values":          {"POST", "/api/comments", "", []string{"x-http-method-override", "POST, DELETE"}, 403, decision.ReasonMethodOverride},
		"a _method query parameter":                 {"POST", "/api/comments?_method=DELETE", "", nil, 403, decision.ReasonMethodOverride},
		"a lower-case _method":                      {"POST", "/api/comments?_method=delete", "", nil, 403, decision.ReasonMethodOverride},
		"an escaped _method name":                   {"POST", "/api/comments?%5Fmethod=DELETE", "", nil, 403, decision.ReasonMethodOverride},
		"an escaped _method value":                  {"POST", "/api/comments?_method=%44ELETE", "", nil, 403, decision.ReasonMethodOverride},
		"a _method name PHP reads from .method":     {"POST", "/api/comments?.method=DELETE", "", nil, 403, decision.ReasonMethodOverride},
		"a _method after a semicolon":               {"POST", "/api/comments?x=1;_method=DELETE", "", nil, 403, decision.ReasonMethodOverride},
		"a second _method":                          {"POST", "/api/comments?_method=POST&_method=DELETE", "", nil, 403, decision.ReasonMethodOverride},
		"an override to the same method":            {"POST", "/api/comments", "", []string{"x-http-method-override", "POST"}, 200, decision.ReasonAllowed},
		"an empty override":                         {"POST", "/api/comments?_method=", "", []string{"x-http-method-override", ""}, 200, decision.ReasonAllowed},
		"a _method in the fragment is no parameter": {"POST", "/api/comments#?_method=DELETE", "", nil, 200, decision.ReasonAllowed},
		"an override from an anonymous GET":         {"GET", "/api/health", "", []string{"x-http-method-override", "DELETE"}, 403, decision.ReasonMethodOverride},
		"an override needing a token, without one":  {"POST", "/api/users/alice/tasks", "", []string{"x-http-method-override", "DELETE"}, 403, decision.ReasonMethodOverride},
		"an override needing a token, with the owner's": {
			"POST", "/api/users/alice/tasks", alice, []string{"x-http-method-override", "DELETE"}, 200, decision.ReasonAllowed},
		"an override needing a token, with another user's": {
			"POST", "/api/users/alice/tasks", bob, []string{"x-http-method-override", "DELETE"}, 403, decision.ReasonMethodOverride},
		"an override the caller may use": {"GET", "/api/users/alice/tasks", alice, []string{"x-http-method", "DELETE"}, 200, decision.ReasonAllowed},
		// Frameworks upper-case the override: "delete" names DELETE,
		// which the caller may use (SPEC: "allowed for that method").
		"a lower-case override the caller may use":   {"GET", "/api/users/alice/tasks", alice, []string{"x-http-method-override", "delete"}, 200, decision.ReasonAllowed},
		"a mixed-case _method the caller may use":    {"GET", "/api/users/alice/tasks?_method=Delete", alice, nil, 200, decision.ReasonAllowed},
		"a lower-case override beside a denied one":  {"GET", "/api/users/alice/tasks", alice, []string{"x-http-method-override", "delete", "x-http-method", "put"}, 403, decision.ReasonMethodOverride},
		"a lower-case override of the request's own": {"POST", "/api/comments", "", []string{"x-http-method-override", "post"}, 200, decision.ReasonAllowed},
		"an override that is no method":              {"POST", "/api/comments", "", []string{"x-http-method-override", "DEL ETE"}, 400, decision.ReasonInvalidOverride},
		"a _method that is no method":                {"POST", "/api/comments?_method=DEL%0AETE", "", nil, 400, decision.ReasonInvalidOverride},
		"a badly escaped _method":                    {"POST", "/api/comments?_method=%zz", "", nil, 400, decision.ReasonInvalidOverride},
		"too many overrides":                         {"POST", "/api/comments", "", []string{"x-http-method-override", strings.Repeat("a,", 5) + "B,C,D,E,F"}, 400, decision.ReasonInvalidOverride},
		"the owner check of the request stays":       {"GET", "/api/users/bob/tasks", alice, []string{"x-http-method-override", "GET"}, 403, decision.ReasonOwnerMismatch},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), request(tc.method, tc.path, tc.token, tc.headers...))
			if d.Status != tc.status || d.Reason != tc.reason {
				t.Fatalf("%s %s %v: %d %s, want %d %s", tc.method, tc.path, tc.headers, d.Status, d.Reason, tc.status, tc.reason)
			}
		})
	}
}
