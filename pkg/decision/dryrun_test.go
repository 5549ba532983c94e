package decision_test

import (
	"context"
	"testing"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestDecideDryRunBesideEnforcing checks that a dryRun policy never takes
// traffic from an enforcing one: the answer comes from the enforcing
// policy (or the default action), and the dryRun policy that would govern
// the request if it enforced is evaluated beside it.
func TestDecideDryRunBesideEnforcing(t *testing.T) {
	anon := func(ns, name string, mods ...pt.Modifier) *v1alpha1.AuthPolicy {
		return pt.New(append([]pt.Modifier{pt.WithName(ns, name), pt.WithJWT(nil), pt.WithMode(v1alpha1.ModeDryRun),
			pt.WithRule(v1alpha1.Rule{Name: "all", Anonymous: true})}, mods...)...)
	}
	for _, defaultAllow := range []bool{false, true} {
		f := newFixture(t, decision.Options{DefaultAllow: defaultAllow})
		f.load(t,
			// Older than the enforcing policy, with its host and prefix: not
			// a conflict, since a dryRun policy never governs.
			unlimitedPolicy(f.key, pt.WithName("shop", "tasks-v2"), pt.WithHosts("api.example.com"), pt.WithMode(v1alpha1.ModeDryRun)),
			unlimitedPolicy(f.key, pt.WithHosts("api.example.com")),
			// A longer prefix, no token needed.
			anon("shop", "greedy", pt.WithHosts("api.example.com"), pt.WithPathPrefix("/api/users")),
			pt.New(pt.WithName("shop", "static"), pt.WithJWT(nil), pt.WithHosts("api.example.com"), pt.WithPathPrefix("/static"),
				pt.WithRule(v1alpha1.Rule{Name: "files", Anonymous: true})),
			// Any host: below the enforcing policies' exact host.
			pt.New(pt.WithName("shop", "catch-all"), pt.WithMode(v1alpha1.ModeDryRun),
				pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = f.key.JWKS() }),
				pt.WithRule(v1alpha1.Rule{Name: "token", Path: "/**"})),
		)
		alice := f.token(t, "alice", nil)
		elsewhere := 403
		if defaultAllow {
			elsewhere = 200
		}
		tests := map[string]struct {
			req           *decision.Request
			status        int
			policy        string
			dryRun        string
			dryRunStatus  int
			dryRunReason  string
			dryRunSubject string
		}{
			"no token: the enforcing policy answers": {
				req: request("GET", "/api/users/alice/tasks", ""), status: 401, policy: "shop/tasks-api",
				dryRun: "shop/greedy", dryRunStatus: 200, dryRunReason: decision.ReasonAllowed},
			"another user's tasks": {
				req: request("GET", "/api/users/bob/tasks", alice), status: 403, policy: "shop/tasks-api",
				dryRun: "shop/greedy", dryRunStatus: 200, dryRunReason: decision.ReasonAllowed},
			"a garbage token": {
				req: request("DELETE", "/api/users/bob/tasks/1", "garbage"), status: 401, policy: "shop/tasks-api",
				dryRun: "shop/greedy", dryRunStatus: 200, dryRunReason: decision.ReasonAllowed},
			"the caller's own tasks": {
				req: request("GET", "/api/users/alice/tasks", alice), status: 200, policy: "shop/tasks-api",
				dryRun: "shop/greedy", dryRunStatus: 200, dryRunReason: decision.ReasonAllowed},
			"a dryRun policy with the enforcing one's host and prefix is evaluated beside it": {
				req: request("GET", "/api/me", ""), status: 401, policy: "shop/tasks-api",
				dryRun: "shop/tasks-v2", dryRunStatus: 401, dryRunReason: "missing"},
			"its would-be decision has its own subject": {
				req: request("GET", "/api/me", alice), status: 200, policy: "shop/tasks-api",
				dryRun: "shop/tasks-v2", dryRunStatus: 200, dryRunReason: decision.ReasonAllowed, dryRunSubject: "alice"},
			"a dryRun policy below the enforcing one is not evaluated": {
				req: request("GET", "/static/app.js", ""), status: 200, policy: "shop/static"},
			"where no enforcing policy governs, the default action answers": {
				req: request("GET", "/elsewhere", ""), status: elsewhere, policy: "",
				dryRun: "shop/catch-all", dryRunStatus: 401, dryRunReason: "missing"},
			"an explicitly selected dryRun policy does not answer either": {
				req:    &decision.Request{Method: "GET", Host: "api.example.com", Path: "/api/users/bob/tasks", PolicyKey: "shop/greedy"},
				status: elsewhere, policy: "",
				dryRun: "shop/greedy", dryRunStatus: 200, dryRunReason: decision.ReasonAllowed},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				d := f.engine.Decide(context.Background(), tc.req)
				if d.Status != tc.status || d.Policy != tc.policy || d.Allowed != (tc.status == 200) {
					t.Fatalf("default allow %v: %d %s policy %q, want %d policy %q", defaultAllow, d.Status, d.Reason, d.Policy, tc.status, tc.policy)
				}
				dr := d.DryRun
				if dr.Policy != tc.dryRun || dr.Status != tc.dryRunStatus || dr.Reason != tc.dryRunReason || dr.Subject != tc.dryRunSubject {
					t.Fatalf("default allow %v: dry run %+v, want %s %d %s sub %q", defaultAllow, dr, tc.dryRun, tc.dryRunStatus, tc.dryRunReason, tc.dryRunSubject)
				}
				if dr.WouldDeny() != (tc.dryRun != "" && tc.dryRunStatus != 200) || dr.Evaluated() != (tc.dryRun != "") {
					t.Fatalf("WouldDeny %v Evaluated %v", dr.WouldDeny(), dr.Evaluated())
				}
			})
		}
	}
}
