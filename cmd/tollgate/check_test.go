package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "https://api.test"
)

// testPolicies is shop/tasks, a tasks API where users reach only their own
// tasks (admins any), and shop/preview, a dry-run policy that needs a token
// for everything. Both verify tokens against the inline JWKS %[1]s.
const testPolicies = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: tasks
  namespace: shop
spec:
  hosts: ["api.example.com"]
  pathPrefix: /api
  jwt:
    issuer: ` + testIssuer + `
    audiences: ["` + testAudience + `"]
    jwks: '%[1]s'
    forwardClaims:
      x-user-id: sub
  rules:
    - name: health
      methods: [GET]
      path: /api/health
      anonymous: true
    - name: search
      methods: [GET]
      path: /api/search
      limits:
        - name: per-user
          requests: 100
          period: 15m
          burst: 10
          by: user
    - name: own-tasks
      methods: [GET, POST]
      path: /api/users/{userId}/tasks/**
      owner:
        claim: sub
        path: userId
        allowIf:
          claim: role
          values: [admin]
---
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: preview
  namespace: shop
spec:
  hosts: ["api.example.com"]
  pathPrefix: /preview
  mode: dryRun
  jwt:
    issuer: ` + testIssuer + `
    jwks: '%[1]s'
  rules:
    - name: everything
      path: /preview/**
`

// blanks matches the runs of spaces that align text output.
var blanks = regexp.MustCompile(`[ \t]+`)

// writeTestPolicies writes testPolicies with jwks into a new directory and
// returns it.
func writeTestPolicies(t *testing.T, jwks string) string {
	t.Helper()
	dir := t.TempDir()
	doc := strings.ReplaceAll(testPolicies, "%[1]s", strings.TrimSpace(jwks))
	if err := os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkFixture is a policy directory with tokens signed by its key.
type checkFixture struct {
	dir                          string
	alice, admin, stray, expired string
}

func newCheckFixture(t *testing.T) checkFixture {
	t.Helper()
	key := jwttest.NewEd25519(t)
	now := time.Now()
	admin := jwttest.Claims("carol", testIssuer, testAudience, now, time.Hour)
	admin["role"] = "admin"
	return checkFixture{
		dir:     writeTestPolicies(t, key.JWKS()),
		alice:   key.Mint(t, jwttest.Claims("alice", testIssuer, testAudience, now, time.Hour)),
		admin:   key.Mint(t, admin),
		stray:   jwttest.NewEd25519(t).Mint(t, jwttest.Claims("alice", testIssuer, testAudience, now, time.Hour)),
		expired: key.Mint(t, jwttest.Claims("alice", testIssuer, testAudience, now.Add(-2*time.Hour), time.Hour)),
	}
}

// args returns a check command line for this fixture's policies.
func (f checkFixture) args(extra ...string) []string {
	return append([]string{"check", "--policy-dir", f.dir, "--host", "api.example.com"}, extra...)
}

func TestCheckDecisions(t *testing.T) {
	f := newCheckFixture(t)
	tests := map[string]struct {
		args []string
		code int
		// stdout must contain each of these.
		contains []string
	}{
		"alice may read her own tasks": {
			args:     f.args("--path", "/api/users/alice/tasks/1", "--token", f.alice),
			code:     0,
			contains: []string{"ALLOW 200", "shop/tasks", "own-tasks", "token ok sub=alice", "x-user-id: alice"},
		},
		"alice may not read bob's tasks": {
			args:     f.args("--path", "/api/users/bob/tasks/1", "--token", f.alice),
			code:     1,
			contains: []string{"DENY 403", "shop/tasks", "own-tasks", "owner_mismatch", "owner bob is not the token's sub", `{"error":"forbidden"`},
		},
		"an admin may read bob's tasks": {
			args:     f.args("--method", "POST", "--path", "/api/users/bob/tasks", "--token", f.admin),
			code:     0,
			contains: []string{"ALLOW 200", "own-tasks", "owner bypass", "x-user-id: carol"},
		},
		"no token is denied 401 with a challenge": {
			args:     f.args("--path", "/api/users/alice/tasks/1"),
			code:     1,
			contains: []string{"DENY 401", "own-tasks", "missing", `www-authenticate: Bearer realm="tollgate"`},
		},
		"a token from another key is denied": {
			args:     f.args("--path", "/api/users/alice/tasks/1", "--token", f.stray),
			code:     1,
			contains: []string{"DENY 401", "own-tasks", "unknown_kid"},
		},
		"an expired token is denied": {
			args:     f.args("--path", "/api/users/alice/tasks/1", "--token", f.expired),
			code:     1,
			contains: []string{"DENY 401", "expired", `www-authenticate: Bearer realm="tollgate", error="invalid_token", error_description="token expired"`},
		},
		"the token is read from --header too, name lower-cased": {
			args:     f.args("--path", "/api/users/alice/tasks/1", "--header", "Authorization=Bearer "+f.alice),
			code:     0,
			contains: []string{"ALLOW 200", "own-tasks"},
		},
		"health needs no token": {
			args:     f.args("--path", "/api/health"),
			code:     0,
			contains: []string{"ALLOW 200", "rule: health", "anonymous rule"},
		},
		"a lower-case method is taken as sent, as the server takes it": {
			args:     f.args("--method", "post", "--path", "/api/users/bob/tasks", "--token", f.admin),
			code:     1,
			contains: []string{"DENY 403", "no_rule"},
		},
		"a method with spaces is a bad request, as on the server": {
			args:     f.args("--method", " GET", "--path", "/api/health"),
			code:     1,
			contains: []string{"DENY 400", "invalid_method"},
		},
		"a method no rule allows is denied": {
			args:     f.args("--method", "DELETE", "--path", "/api/users/alice/tasks/1", "--token", f.alice),
			code:     1,
			contains: []string{"DENY 403", "no_rule", "rule: -"},
		},
		"a path no policy governs is denied by default": {
			args:     f.args("--path", "/other"),
			code:     1,
			contains: []string{"DENY 403", "no_policy", "policy: -"},
		},
		"--default-action allow lets it through": {
			args:     f.args("--path", "/other", "--default-action", "allow"),
			code:     0,
			contains: []string{"ALLOW 200", "default_allow"},
		},
		"another host matches no policy": {
			args:     f.args("--host", "other.example.com", "--path", "/api/health"),
			code:     1,
			contains: []string{"no_policy"},
		},
		"the host header stands in for --host": {
			args:     []string{"check", "--policy-dir", f.dir, "--header", "host=api.example.com:443", "--path", "/api/health"},
			code:     0,
			contains: []string{"ALLOW 200", "health"},
		},
		"--policy selects the policy whatever the host": {
			args:     f.args("--host", "other.example.com", "--policy", "shop/tasks", "--path", "/api/health"),
			code:     0,
			contains: []string{"ALLOW 200", "shop/tasks", "health"},
		},
		"--policy naming no policy is denied": {
			args:     f.args("--policy", "shop/nope", "--path", "/api/health"),
			code:     1,
			contains: []string{"DENY 403", "unknown_policy"},
		},
		"a dry-run policy never answers; its would-be decision is shown": {
			args:     f.args("--path", "/preview/page"),
			code:     1,
			contains: []string{"DENY 403", "no_policy", "dry run: shop/preview rule everything: would deny 401 (missing)", "dry-run token deny no token in the request"},
		},
		"the default action answers beside a dry-run policy": {
			args:     f.args("--path", "/preview/page", "--default-action", "allow"),
			code:     0,
			contains: []string{"ALLOW 200", "default_allow", "dry run: shop/preview rule everything: would deny 401"},
		},
		"the quota is explained plainly, and its headers shown": {
			args: f.args("--path", "/api/search", "--token", f.alice),
			code: 0,
			contains: []string{"ALLOW 200", "rule: search",
				"quota ok per-user (by user): 100 requests per 15m, burst 10: at most 10 at once, then one every 9s, so up to 110 in the first 15m; charged, 9 left, full again in 9s",
				"x-ratelimit-limit: 100", "x-ratelimit-remaining: 9", "x-ratelimit-reset: 9",
				`ratelimit-policy: "per-user";q=100;w=900`, `ratelimit: "per-user";r=9;t=9`},
		},
		"an encoded slash is a bad request": {
			args:     f.args("--path", "/api/users/alice%2Fbob/tasks/1", "--token", f.alice),
			code:     1,
			contains: []string{"DENY 400", "invalid_path", "encoded slash"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			squashed := blanks.ReplaceAllString(stdout, " ")
			for _, s := range tc.contains {
				if !strings.Contains(squashed, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, stdout)
				}
			}
			if stderr != "" {
				t.Errorf("unexpected stderr:\n%s", stderr)
			}
		})
	}
}

func TestCheckUsageAndPolicyErrors(t *testing.T) {
	f := newCheckFixture(t)
	tests := map[string]struct {
		args []string
		// stderr must contain each of these.
		contains []string
	}{
		"--path is required": {
			args:     f.args(),
			contains: []string{`"path" not set`},
		},
		"policies are required": {
			args:     []string{"check", "--path", "/api/health"},
			contains: []string{"--policy-dir or --policy-file"},
		},
		"an unknown flag": {
			args:     f.args("--path", "/api/health", "--no-such-flag"),
			contains: []string{"unknown flag: --no-such-flag"},
		},
		"a stray argument": {
			args:     f.args("--path", "/api/health", "extra"),
			contains: []string{"check takes no arguments"},
		},
		"an unknown output format": {
			args:     f.args("--path", "/api/health", "-o", "yaml"),
			contains: []string{`--output "yaml"`},
		},
		"an unknown default action": {
			args:     f.args("--path", "/api/health", "--default-action", "maybe"),
			contains: []string{`--default-action "maybe"`},
		},
		"a source IP that is not one": {
			args:     f.args("--path", "/api/health", "--source-ip", "localhost"),
			contains: []string{`--source-ip "localhost"`},
		},
		"a header without a value": {
			args:     f.args("--path", "/api/health", "--header", "x-a=1", "--header", "x-b"),
			contains: []string{"--header #2: want name=value"},
		},
		"--token and an authorization header together": {
			args:     f.args("--path", "/api/health", "--token", f.alice, "--header", "authorization=Bearer x"),
			contains: []string{"--token and --header authorization"},
		},
		"a broken policy file names every mistake": {
			args: []string{"check", "--policy-file", "../../pkg/policyfile/testdata/invalid/many-mistakes.yaml", "--path", "/"},
			contains: []string{
				"tollgate: cannot decide: 5 error(s) in the policies\n",
				"shop/broken: spec.rules[0].owner.path",
				"shop/broken: spec.jwt",
			},
		},
		"a missing policy directory": {
			args:     []string{"check", "--policy-dir", filepath.Join(t.TempDir(), "nope"), "--path", "/"},
			contains: []string{"nope"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			for _, s := range tc.contains {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, stderr)
				}
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	f := newCheckFixture(t)
	tests := map[string]struct {
		args []string
		code int
		want map[string]any // top-level fields compared after decoding
		// upstream and response headers expected in the output.
		upstream, response map[string]any
		remove             []any
	}{
		"allow": {
			args: f.args("--path", "/api/users/alice/tasks/1", "--token", f.alice, "-o", "json"),
			code: 0,
			want: map[string]any{
				"allowed": true, "status": 200.0, "code": "", "reason": "allowed", "message": "",
				"policy": "shop/tasks", "rule": "own-tasks", "subject": "alice",
				"dryRun": false, "wouldDeny": false, "body": nil,
			},
			upstream: map[string]any{"x-user-id": "alice"},
			response: map[string]any{},
			remove:   []any{},
		},
		"deny": {
			args: f.args("--path", "/api/users/bob/tasks/1", "--token", f.alice, "--output", "json"),
			code: 1,
			want: map[string]any{
				"allowed": false, "status": 403.0, "code": "forbidden", "reason": "owner_mismatch",
				"message": "this resource belongs to another user",
				"policy":  "shop/tasks", "rule": "own-tasks", "subject": "alice",
				"dryRun": false, "wouldDeny": false,
				"body": map[string]any{"error": "forbidden", "message": "this resource belongs to another user"},
			},
			upstream: map[string]any{},
			response: map[string]any{},
			remove:   []any{},
		},
		"a dry-run policy beside the default action": {
			args: f.args("--path", "/preview/x", "--default-action", "allow", "-o", "json"),
			code: 0,
			want: map[string]any{
				"allowed": true, "status": 200.0, "reason": "default_allow", "policy": "",
				"dryRun": true, "wouldDeny": true, "dryRunPolicy": "shop/preview", "dryRunRule": "everything",
				"dryRunStatus": 401.0, "dryRunReason": "missing",
			},
			upstream: map[string]any{},
			response: map[string]any{},
			remove:   []any{"x-user-id"},
		},
		"unauthenticated": {
			args: f.args("--path", "/api/users/bob/tasks/1", "-o", "json"),
			code: 1,
			want: map[string]any{
				"allowed": false, "status": 401.0, "code": "unauthenticated", "reason": "missing",
				"policy": "shop/tasks", "rule": "own-tasks", "subject": "",
			},
			upstream: map[string]any{},
			response: map[string]any{"www-authenticate": `Bearer realm="tollgate"`},
			remove:   []any{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, stdout)
			}
			for _, field := range []string{"allowed", "status", "code", "reason", "message", "policy", "rule", "subject",
				"dryRun", "wouldDeny", "dryRunPolicy", "dryRunRule", "dryRunStatus", "dryRunReason",
				"steps", "upstreamHeaders", "removeHeaders", "responseHeaders", "body"} {
				if _, ok := got[field]; !ok {
					t.Errorf("field %q missing", field)
				}
			}
			for field, want := range tc.want {
				if !jsonEqual(got[field], want) {
					t.Errorf("%s = %#v, want %#v", field, got[field], want)
				}
			}
			for field, want := range map[string]any{"upstreamHeaders": tc.upstream, "responseHeaders": tc.response, "removeHeaders": tc.remove} {
				if !jsonEqual(got[field], want) {
					t.Errorf("%s = %#v, want %#v", field, got[field], want)
				}
			}
			steps, _ := got["steps"].([]any)
			if len(steps) < 3 {
				t.Fatalf("steps = %#v, want path, policy, rule and more", got["steps"])
			}
			last, _ := steps[len(steps)-1].(map[string]any)
			for _, k := range []string{"name", "outcome", "detail"} {
				if _, ok := last[k].(string); !ok {
					t.Errorf("step field %q missing in %#v", k, last)
				}
			}
		})
	}
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// TestCheckNeverPrintsTheToken runs check in every outcome, the usage
// errors included, and looks for any of the token's three parts in its
// output.
func TestCheckNeverPrintsTheToken(t *testing.T) {
	f := newCheckFixture(t)
	tests := map[string]struct {
		token string
		args  []string
	}{
		"allowed":                     {f.alice, f.args("--path", "/api/users/alice/tasks/1", "--token", f.alice)},
		"allowed, json":               {f.alice, f.args("--path", "/api/users/alice/tasks/1", "--token", f.alice, "-o", "json")},
		"owner mismatch":              {f.alice, f.args("--path", "/api/users/bob/tasks/1", "--token", f.alice)},
		"unknown key, json":           {f.stray, f.args("--path", "/api/users/alice/tasks/1", "--token", f.stray, "-o", "json")},
		"expired":                     {f.expired, f.args("--path", "/api/users/alice/tasks/1", "--token", f.expired)},
		"dry run":                     {f.alice, f.args("--path", "/preview/x", "--token", f.alice)},
		"header in curl syntax":       {f.alice, f.args("--path", "/api/health", "--header", "authorization: Bearer "+f.alice)},
		"token and header":            {f.alice, f.args("--path", "/api/health", "--token", f.alice, "--header", "authorization=Bearer "+f.alice)},
		"token with a bad flag":       {f.alice, f.args("--path", "/api/health", "--token", f.alice, "--source-ip", "nope")},
		"token passed as an argument": {f.alice, f.args("--path", "/api/health", f.alice)},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, stdout, stderr := runCommand(t, tc.args...)
			parts := strings.Split(tc.token, ".")
			if len(parts) != 3 {
				t.Fatalf("fixture token has %d parts", len(parts))
			}
			for i, p := range parts {
				if strings.Contains(stdout, p) || strings.Contains(stderr, p) {
					t.Errorf("output contains part %d of the token:\nstdout:\n%s\nstderr:\n%s", i, stdout, stderr)
				}
			}
		})
	}
}

// TestCheckCannotDecide runs check where no decision can be made: it exits
// 2, not 1 (a deny), with the cause on the first line of stderr and
// nothing on stdout.
func TestCheckCannotDecide(t *testing.T) {
	key := jwttest.NewEd25519(t)
	token := key.Mint(t, jwttest.Claims("alice", testIssuer, testAudience, time.Now(), time.Hour))
	hsToken := jwttest.NewHS256(t).Mint(t, jwttest.Claims("alice", testIssuer, testAudience, time.Now(), time.Hour))
	closed := closedURL(t)
	policy := func(keySource string) string {
		return `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: api, namespace: shop}
spec:
  jwt:
    issuer: ` + testIssuer + `
    ` + keySource + `
  rules:
    - name: everything
`
	}
	secretsDir := t.TempDir()
	tests := map[string]struct {
		policies map[string]string // file name → content, in a new directory
		args     []string
		// first is the start of the first line of stderr.
		first string
	}{
		"an unreachable JWKS": {
			policies: map[string]string{"p.yaml": policy("jwksURI: " + closed)},
			args:     []string{"--path", "/x", "--token", token},
			first:    "tollgate: cannot decide: the verification keys of policy shop/api are unavailable: jwks " + closed,
		},
		"a secretRef without --secrets-dir": {
			policies: map[string]string{"p.yaml": policy("secretRef: {name: auth, key: jwt-secret}")},
			args:     []string{"--path", "/x", "--token", hsToken},
			first:    "tollgate: cannot decide: the verification keys of policy shop/api are unavailable: secretRef shop/auth/jwt-secret: give --secrets-dir DIR, where the file DIR/shop/auth/jwt-secret holds the secret",
		},
		"a secret missing from --secrets-dir": {
			policies: map[string]string{"p.yaml": policy("secretRef: {name: auth, key: jwt-secret}")},
			args:     []string{"--path", "/x", "--token", hsToken, "--secrets-dir", secretsDir},
			first:    "tollgate: cannot decide: the verification keys of policy shop/api are unavailable: secret shop/auth/jwt-secret: stat " + secretsDir + "/shop/auth/jwt-secret: no such file or directory",
		},
		"no policy at all": {
			policies: map[string]string{},
			args:     []string{"--path", "/x"},
			first:    "tollgate: cannot decide: no AuthPolicy found in ",
		},
		"only documents of other kinds": {
			policies: map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"},
			args:     []string{"--path", "/x"},
			first:    "tollgate: cannot decide: no AuthPolicy found in ",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for f, content := range tc.policies {
				writeFile(t, dir, f, content)
			}
			code, stdout, stderr := runCommand(t, append([]string{"check", "--policy-dir", dir}, tc.args...)...)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
			}
			if !strings.HasPrefix(stderr, tc.first) {
				t.Errorf("stderr does not start with %q:\n%s", tc.first, stderr)
			}
			if stdout != "" {
				t.Errorf("a decision was printed:\n%s", stdout)
			}
		})
	}
}

// TestCheckWithoutTokenSaysNothingOfKeys checks that a request that never
// needs keys decides without a word about an unreachable JWKS.
func TestCheckWithoutTokenSaysNothingOfKeys(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "p.yaml", `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: api, namespace: shop}
spec:
  jwt:
    issuer: `+testIssuer+`
    jwksURI: `+closedURL(t)+`
  rules:
    - name: health
      path: /health
      anonymous: true
    - name: everything
`)
	for _, path := range []string{"/x", "/health"} {
		code, stdout, stderr := runCommand(t, "check", "--policy-dir", dir, "--path", path)
		if code == 2 || stderr != "" {
			t.Errorf("%s: exit code %d, stderr:\n%s\nstdout:\n%s", path, code, stderr, stdout)
		}
	}
}

// closedURL returns a JWKS URL on a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/jwks"
}

// TestCheckReadsKubectlOutput: the policies exported as
// docs/troubleshooting.md says (kubectl get authpolicies -A -o yaml, a v1
// List) decide as the files they came from.
func TestCheckReadsKubectlOutput(t *testing.T) {
	f := newCheckFixture(t)
	docs, err := os.ReadFile(filepath.Join(f.dir, "policies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var list strings.Builder
	list.WriteString("apiVersion: v1\nitems:\n")
	for _, doc := range strings.Split(string(docs), "---\n") {
		list.WriteString("- " + strings.ReplaceAll(strings.TrimSuffix(doc, "\n"), "\n", "\n  ") + "\n")
	}
	list.WriteString("kind: List\nmetadata:\n  resourceVersion: \"\"\n")
	file := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(file, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args     []string
		code     int
		contains []string
	}{
		{[]string{"--path", "/api/users/alice/tasks/1", "--token", f.alice}, 0, []string{"ALLOW 200", "shop/tasks", "own-tasks"}},
		{[]string{"--path", "/api/users/bob/tasks/1", "--token", f.alice}, 1, []string{"DENY 403", "shop/tasks", "owner_mismatch"}},
		{[]string{"--path", "/preview/x", "--token", f.alice}, 1, []string{"shop/preview"}},
	} {
		code, stdout, stderr := runCommand(t, append([]string{"check", "--policy-file", file, "--host", "api.example.com"}, tc.args...)...)
		if code != tc.code {
			t.Fatalf("%v: exit %d, want %d\n%s%s", tc.args, code, tc.code, stdout, stderr)
		}
		for _, s := range tc.contains {
			if !strings.Contains(stdout, s) {
				t.Errorf("%v: stdout does not contain %q:\n%s", tc.args, s, stdout)
			}
		}
	}
}
