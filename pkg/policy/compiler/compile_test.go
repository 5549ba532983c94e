package compiler_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policy"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

func anonymousHealth() v1alpha1.Rule {
	return v1alpha1.Rule{Name: "health", Path: "/api/health", Anonymous: true}
}

func TestCompileRejects(t *testing.T) {
	tests := map[string]struct {
		policy *v1alpha1.AuthPolicy
		// fields are the field paths that must be reported, all of them.
		fields []string
	}{
		"owner.path naming an undeclared variable": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/users/{userId}", Owner: &v1alpha1.Owner{Path: "userid"}})),
			[]string{"spec.rules[0].owner.path"},
		},
		"owner.path on a rule without a path": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Owner: &v1alpha1.Owner{Path: "userId"}})),
			[]string{"spec.rules[0].owner.path"},
		},
		"owner with two sources": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/u/{id}", Owner: &v1alpha1.Owner{Path: "id", Header: "x-user"}})),
			[]string{"spec.rules[0].owner"},
		},
		"owner with no source": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Owner: &v1alpha1.Owner{}})),
			[]string{"spec.rules[0].owner"},
		},
		"anonymous rule with an owner": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/u/{id}", Anonymous: true, Owner: &v1alpha1.Owner{Path: "id"}})),
			[]string{"spec.rules[0].owner"},
		},
		"zero requests, bad period, unknown by": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 0, Period: "forever", By: "planet"})),
			[]string{"spec.limits[0].requests", "spec.limits[0].period", "spec.limits[0].by"},
		},
		"period out of range": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 1, Period: "500ms", By: "ip"})),
			[]string{"spec.limits[0].period"},
		},
		"burst 0": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 1, Period: "1m", By: "ip", Burst: ptr(0)})),
			[]string{"spec.limits[0].burst"},
		},
		"burst over 1000 times requests": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 10, Period: "1m", By: "ip", Burst: ptr(10_001)})),
			[]string{"spec.limits[0].burst"},
		},
		"a tier's burst over 1000 times its requests": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 10, Period: "1m", By: "user",
				Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"free": {Requests: 1, Burst: ptr(1001)}}}})),
			[]string{"spec.limits[0].tiers.values[free].burst"},
		},
		"a tier taking the limit's burst, over 1000 times its requests": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 100, Burst: ptr(2000), Period: "1m", By: "user",
				Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"free": {Requests: 1}}}})),
			[]string{"spec.limits[0].tiers.values[free].requests"},
		},
		"negative requests in a tier": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 1, Period: "1m", By: "user",
				Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: -1}}}})),
			[]string{"spec.limits[0].tiers.values[premium].requests"},
		},
		"two key sources": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKSURI = "https://auth.example.com/jwks" })),
			[]string{"spec.jwt"},
		},
		"no key source": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = "" })),
			[]string{"spec.jwt"},
		},
		"missing issuer": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.Issuer = "" })),
			[]string{"spec.jwt.issuer"},
		},
		"HS256 without secretRef": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.Algorithms = []string{"HS256"} })),
			[]string{"spec.jwt.algorithms[0]"},
		},
		"RS256 with secretRef": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) {
				j.JWKS = ""
				j.SecretRef = &v1alpha1.SecretKeyRef{Name: "auth", Key: "secret"}
				j.Algorithms = []string{"RS256"}
			})),
			[]string{"spec.jwt.algorithms[0]"},
		},
		"alg none": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.Algorithms = []string{"none"} })),
			[]string{"spec.jwt.algorithms[0]"},
		},
		"clock skew over 5m": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.ClockSkew = "10m" })),
			[]string{"spec.jwt.clockSkew"},
		},
		"jwksURI that is not a URL": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.JWKS = ""; j.JWKSURI = "file:///etc/passwd" })),
			[]string{"spec.jwt.jwksURI"},
		},
		"token source with two places": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) {
				j.TokenFrom = []v1alpha1.TokenSource{{Header: "authorization", Cookie: "session"}}
			})),
			[]string{"spec.jwt.tokenFrom[0]"},
		},
		"forwarding a claim into the host header": {
			pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) { j.ForwardClaims = map[string]string{"Host": "sub"} })),
			[]string{"spec.jwt.forwardClaims[Host]"},
		},
		"no jwt with a rule that needs a token": {
			pt.New(pt.WithJWT(nil), pt.WithRule(pt.OwnTasksRule())),
			[]string{"spec.jwt"},
		},
		"no rules": {
			pt.New(),
			[]string{"spec.rules"},
		},
		"duplicate rule names": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithRule(anonymousHealth())),
			[]string{"spec.rules[1].name"},
		},
		"duplicate limit names across policy and rule": {
			pt.New(pt.WithLimit(v1alpha1.Limit{Name: "l", Requests: 1, Period: "1m", By: "ip"}),
				pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/a", Limits: []v1alpha1.Limit{{Name: "l", Requests: 1, Period: "1m", By: "user"}}})),
			[]string{"spec.rules[0].limits[0].name"},
		},
		"double star not last": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/a/**/b"})),
			[]string{"spec.rules[0].path"},
		},
		"rule path outside the prefix": {
			pt.New(pt.WithPathPrefix("/api"), pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/admin/**"})),
			[]string{"spec.rules[0].path"},
		},
		"anonymous rule limited by user": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Path: "/a", Anonymous: true, Limits: []v1alpha1.Limit{{Name: "l", Requests: 1, Period: "1m", By: "user"}}})),
			[]string{"spec.rules[0].limits[0].by"},
		},
		"unknown method": {
			pt.New(pt.WithRule(v1alpha1.Rule{Name: "r", Methods: []string{"get"}})),
			[]string{"spec.rules[0].methods[0]"},
		},
		"bad host and mode": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithHosts("API.example.com", "*.example.com", "*.example.com"), pt.WithMode("audit")),
			[]string{"spec.hosts[0]", "spec.hosts[2]", "spec.mode"},
		},
		"prefix with a dot segment": {
			pt.New(pt.WithRule(anonymousHealth()), pt.WithPathPrefix("/api/../admin")),
			[]string{"spec.pathPrefix"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := compiler.Compile(tc.policy)
			if err == nil {
				t.Fatalf("Compile succeeded (%+v), want errors at %v", p, tc.fields)
			}
			var got []string
			for _, fe := range compiler.FieldErrors(err) {
				got = append(got, fe.Field)
			}
			for _, f := range tc.fields {
				if !slices.Contains(got, f) {
					t.Errorf("no error at %s; got %v (%v)", f, got, err)
				}
			}
			if len(got) != len(tc.fields) {
				t.Errorf("got %d errors %v, want exactly %v", len(got), got, tc.fields)
			}
			if !strings.Contains(err.Error(), "shop/tasks-api") {
				t.Errorf("error %q does not name the policy", err)
			}
		})
	}
}

func TestCompileBetterAuthPreset(t *testing.T) {
	ap := pt.New(pt.WithJWT(&v1alpha1.JWT{BetterAuth: &v1alpha1.BetterAuth{BaseURL: "https://app.example.com/"}}), pt.WithRule(pt.OwnTasksRule()))
	p, err := compiler.Compile(ap)
	if err != nil {
		t.Fatal(err)
	}
	j := p.JWT
	if j.Issuer != "https://app.example.com" || !slices.Equal(j.Audiences, []string{"https://app.example.com"}) {
		t.Errorf("issuer %q audiences %q, want the base URL", j.Issuer, j.Audiences)
	}
	if j.JWKSURI != "https://app.example.com/api/auth/jwks" {
		t.Errorf("jwksURI = %q", j.JWKSURI)
	}
	if !slices.Equal(j.Algorithms, []string{"EdDSA"}) {
		t.Errorf("algorithms = %q, want [EdDSA]", j.Algorithms)
	}
}

func TestCompileDefaults(t *testing.T) {
	p, err := compiler.Compile(pt.New(pt.WithRule(pt.OwnTasksRule()), pt.WithJWTChange(func(j *v1alpha1.JWT) {
		j.Algorithms = []string{"Ed25519", "ES256"}
		j.ForwardClaims = map[string]string{"X-User-Id": "sub", "x-user-email": "email"}
	})))
	if err != nil {
		t.Fatal(err)
	}
	if p.PathPrefix != "/" || p.DryRun {
		t.Errorf("pathPrefix %q dryRun %v", p.PathPrefix, p.DryRun)
	}
	if p.JWT.ClockSkew != 30*time.Second {
		t.Errorf("clockSkew = %v", p.JWT.ClockSkew)
	}
	if !slices.Equal(p.JWT.Algorithms, []string{"EdDSA", "ES256"}) {
		t.Errorf("algorithms = %q, want Ed25519 mapped to EdDSA", p.JWT.Algorithms)
	}
	if want := []policy.TokenSource{{Header: "authorization", Prefix: "Bearer "}}; !slices.Equal(p.JWT.TokenFrom, want) {
		t.Errorf("tokenFrom = %+v", p.JWT.TokenFrom)
	}
	if want := []policy.ForwardClaim{{Header: "x-user-email", Claim: "email"}, {Header: "x-user-id", Claim: "sub"}}; !slices.Equal(p.JWT.ForwardClaims, want) {
		t.Errorf("forwardClaims = %+v, want sorted lower-case headers", p.JWT.ForwardClaims)
	}
	o := p.Rules[0].Owner
	if o.Claim != "sub" || o.Source != policy.OwnerFromPath || o.PathIndex != 0 {
		t.Errorf("owner = %+v", o)
	}
}

func TestCompileLimits(t *testing.T) {
	rule := pt.OwnTasksRule()
	rule.Limits = []v1alpha1.Limit{{Name: "per-user", Requests: 100, Period: "15m", By: "user",
		Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 1000}}}}}
	p, err := compiler.Compile(pt.New(pt.WithRule(rule),
		pt.WithLimit(v1alpha1.Limit{Name: "per-ip", Requests: 1000, Period: "15m", By: "ip"}),
		pt.WithLimit(v1alpha1.Limit{Name: "per-tenant", Requests: 10, Period: "1s", By: "header:X-Tenant"})))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Limits[0].CounterPrefix; got != "14:shop/tasks-api0:6:per-ip2:ip" {
		t.Errorf("policy limit counter prefix = %q", got)
	}
	if p.Limits[1].By != policy.ByHeader || p.Limits[1].ByName != "x-tenant" {
		t.Errorf("header limit = %+v", p.Limits[1])
	}
	l := p.Rules[0].Limits[0]
	if l.CounterPrefix != "14:shop/tasks-api9:own-tasks8:per-user4:user" {
		t.Errorf("rule limit counter prefix = %q", l.CounterPrefix)
	}
	if r := l.For("premium", true); r.Requests != 1000 || r.Period != 15*time.Minute {
		t.Errorf("premium tier = %d per %v", r.Requests, r.Period)
	}
	if r := l.For("free", true); r.Requests != 100 || r.Period != 15*time.Minute {
		t.Errorf("unknown tier = %d per %v, want the base limit", r.Requests, r.Period)
	}
}

func ptr(n int64) *int64 { return &n }

// TestCompileBurst: a limit's burst is its own or its requests; a tier's
// is its own, else the limit's when the limit sets one, else the tier's
// requests.
func TestCompileBurst(t *testing.T) {
	tests := map[string]struct {
		limit v1alpha1.Limit
		tier  string // "" for the limit's own rate
		want  policy.Rate
	}{
		"an unset burst is requests": {
			limit: v1alpha1.Limit{Requests: 100, Period: "15m"},
			want:  policy.Rate{Requests: 100, Burst: 100, Period: 15 * time.Minute},
		},
		"a burst smaller than requests": {
			limit: v1alpha1.Limit{Requests: 100, Burst: ptr(10), Period: "15m"},
			want:  policy.Rate{Requests: 100, Burst: 10, Period: 15 * time.Minute},
		},
		"a burst larger than requests": {
			limit: v1alpha1.Limit{Requests: 1, Burst: ptr(1000), Period: "1s"},
			want:  policy.Rate{Requests: 1, Burst: 1000, Period: time.Second},
		},
		"a tier without burst under a limit without burst takes the tier's requests": {
			limit: v1alpha1.Limit{Requests: 100, Period: "15m", Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 1000}}}},
			tier:  "premium",
			want:  policy.Rate{Requests: 1000, Burst: 1000, Period: 15 * time.Minute},
		},
		"a tier without burst takes the limit's burst": {
			limit: v1alpha1.Limit{Requests: 100, Burst: ptr(10), Period: "15m", Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 1000}}}},
			tier:  "premium",
			want:  policy.Rate{Requests: 1000, Burst: 10, Period: 15 * time.Minute},
		},
		"a tier's own burst wins over the limit's": {
			limit: v1alpha1.Limit{Requests: 100, Burst: ptr(10), Period: "15m", Tiers: &v1alpha1.Tiers{Claim: "plan", Values: map[string]v1alpha1.Tier{"premium": {Requests: 1000, Burst: ptr(50), Period: "1h"}}}},
			tier:  "premium",
			want:  policy.Rate{Requests: 1000, Burst: 50, Period: time.Hour},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rule := pt.OwnTasksRule()
			tc.limit.Name, tc.limit.By = "per-user", "user"
			rule.Limits = []v1alpha1.Limit{tc.limit}
			p, err := compiler.Compile(pt.New(pt.WithRule(rule)))
			if err != nil {
				t.Fatal(err)
			}
			got := p.Rules[0].Limits[0].For(tc.tier, tc.tier != "")
			if got.Requests != tc.want.Requests || got.Burst != tc.want.Burst || got.Period != tc.want.Period {
				t.Errorf("rate = %d per %v, burst %d; want %d per %v, burst %d",
					got.Requests, got.Period, got.Burst, tc.want.Requests, tc.want.Period, tc.want.Burst)
			}
			if want := policy.NewRate("per-user", tc.want.Requests, tc.want.Burst, tc.want.Period); *got != want {
				t.Errorf("rate texts = %+v, want %+v", *got, want)
			}
		})
	}
}
