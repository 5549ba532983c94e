package decision_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestDecideMalformedHost checks that a malformed Host or :authority is
// denied 400 and never falls through to a wildcard or any-host policy, or
// to --default-action allow.
func TestDecideMalformedHost(t *testing.T) {
	anon := func(name string, mods ...pt.Modifier) *v1alpha1.AuthPolicy {
		return pt.New(append([]pt.Modifier{pt.WithName("shop", name), pt.WithJWT(nil), pt.WithRule(v1alpha1.Rule{Name: name, Anonymous: true})}, mods...)...)
	}
	f := newFixture(t, decision.Options{DefaultAllow: true})
	f.load(t,
		unlimitedPolicy(f.key, pt.WithHosts("api.example.com")),
		anon("wild", pt.WithHosts("*.example.com")),
		anon("any"),
	)
	tests := map[string]struct {
		host   string
		status int
		policy string
	}{
		"the exact host":                {"api.example.com", 401, "shop/tasks-api"},
		"the exact host with a port":    {"api.example.com:443", 401, "shop/tasks-api"},
		"the exact host in upper case":  {"API.EXAMPLE.COM", 401, "shop/tasks-api"},
		"the exact host as an FQDN":     {"api.example.com.", 401, "shop/tasks-api"},
		"another name under the suffix": {"www.example.com", 200, "shop/wild"},
		"another host":                  {"other.org", 200, "shop/any"},
		"an empty host":                 {"", 400, ""},
		"repeated trailing dots":        {"api.example.com..", 400, ""},
		"repeated dots inside":          {"api..example.com", 400, ""},
		"two ports":                     {"api.example.com:80:80", 400, ""},
		"an empty port":                 {"api.example.com:", 400, ""},
		"a name in brackets":            {"[api.example.com]", 400, ""},
		"an encoded dot":                {"api.example.com%2e", 400, ""},
		"an encoded letter":             {"%61pi.example.com", 400, ""},
		"a trailing space":              {"api.example.com ", 400, ""},
		"a trailing tab":                {"api.example.com\t", 400, ""},
		"a leading space":               {" api.example.com", 400, ""},
		"user info":                     {"x@api.example.com", 400, ""},
		"two hosts joined":              {"api.example.com,other.org", 400, ""},
		"a non-ASCII look-alike":        {"аpi.example.com", 400, ""},
		"a short IPv4 form":             {"127.1", 400, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := request("GET", "/api/users/alice/tasks", "")
			req.Host = tc.host
			d := f.engine.Decide(context.Background(), req)
			if d.Status != tc.status || d.Policy != tc.policy {
				t.Fatalf("host %q: %d %s policy %q, want %d policy %q", tc.host, d.Status, d.Reason, d.Policy, tc.status, tc.policy)
			}
			if tc.status == 400 && (d.Reason != decision.ReasonInvalidHost || d.Code != decision.CodeBadRequest) {
				t.Fatalf("host %q: reason %q code %q", tc.host, d.Reason, d.Code)
			}
		})
	}
}

// TestDecideMethodAsSent checks that the method is matched exactly as sent
// and that what is no method token is denied 400.
func TestDecideMethodAsSent(t *testing.T) {
	f := newFixture(t, decision.Options{})
	f.load(t, unlimitedPolicy(f.key))
	alice := f.token(t, "alice", nil)
	tests := map[string]struct {
		method string
		status int
		reason string
	}{
		"GET as sent":                {"GET", 200, decision.ReasonAllowed},
		"a lower-case method":        {"get", 403, decision.ReasonNoRule},
		"a mixed-case method":        {"Get", 403, decision.ReasonNoRule},
		"an empty method":            {"", 400, decision.ReasonInvalidMethod},
		"a method with a space":      {" GET", 400, decision.ReasonInvalidMethod},
		"a method with a newline":    {"GET\n", 400, decision.ReasonInvalidMethod},
		"two methods joined":         {"GET,DELETE", 400, decision.ReasonInvalidMethod},
		"an extension method token":  {"PROPFIND", 403, decision.ReasonNoRule},
		"a method with a NUL inside": {"GE\x00T", 400, decision.ReasonInvalidMethod},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			d := f.engine.Decide(context.Background(), request(tc.method, "/api/me", alice))
			if d.Status != tc.status || d.Reason != tc.reason {
				t.Fatalf("method %q: %d %s, want %d %s", tc.method, d.Status, d.Reason, tc.status, tc.reason)
			}
		})
	}
}
