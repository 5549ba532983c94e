package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// runCommand runs tollgate with args and returns its exit code, stdout and
// stderr (with the error message main prints), as the process would.
func runCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runCommandContext(t, context.Background(), args...)
}

// runCommandContext is runCommand under ctx: a server that starts when it
// should not stops when ctx ends, so that its test fails instead of hanging.
func runCommandContext(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	cmd := newRootCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return exitCode(err, &stderr), stdout.String(), stderr.String()
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		args     []string
		code     int
		contains []string
	}{
		"the samples are valid": {
			args: []string{"validate", "../../config/samples/"},
			code: 0,
		},
		"every mistake is named with its field path": {
			args: []string{"validate", "../../pkg/policyfile/testdata/invalid/many-mistakes.yaml"},
			code: 1,
			contains: []string{
				"shop/broken: spec.rules[0].owner.path",
				"shop/broken: spec.limits[0].requests",
				"shop/broken: spec.limits[0].period",
				"shop/broken: spec.limits[0].by",
				"shop/broken: spec.jwt",
			},
		},
		"another kind of manifest is skipped with a warning": {
			args:     []string{"validate", "testdata/validate/mixed.yaml"},
			code:     0,
			contains: []string{"mixed.yaml: document 1: warning: not a tollgate AuthPolicy; skipped: v1 ConfigMap"},
		},
		"an inline jwks that is not JSON is an error, as in serve": {
			args:     []string{"validate", "testdata/validate/jwks-not-json.yaml"},
			code:     1,
			contains: []string{"shop/bad-jwks: spec.jwt: token: invalid settings: inline jwks"},
		},
		"every mistake is named with its line": {
			args: []string{"validate", "../../pkg/policyfile/testdata/invalid/many-mistakes.yaml"},
			code: 1,
			contains: []string{
				"many-mistakes.yaml:8: shop/broken: spec.jwt: ",
				"many-mistakes.yaml:21: shop/broken: spec.rules[0].owner.path: ",
			},
		},
		"kubectl's List of AuthPolicies is read item by item, lines and all": {
			args:     []string{"validate", "../../pkg/policyfile/testdata/list/kubectl-get.yaml"},
			code:     1,
			contains: []string{"kubectl-get.yaml:63: shop/typo: spec.rules[0].path: ", "1 error(s) found"},
		},
		"so is its JSON": {
			args:     []string{"validate", "../../pkg/policyfile/testdata/list/kubectl-get.json"},
			code:     1,
			contains: []string{"kubectl-get.json:86: shop/typo: spec.rules[0].path: ", "1 error(s) found"},
		},
		"a missing file is an error that names it": {
			args:     []string{"validate", "does-not-exist.yaml"},
			code:     1,
			contains: []string{"does-not-exist.yaml: no such file or directory\n"},
		},
		"no argument is a usage error": {
			args: []string{"validate"},
			code: 2,
		},
		"an unknown output format is a usage error": {
			args:     []string{"validate", "-o", "yaml", "../../config/samples/"},
			code:     2,
			contains: []string{`--output "yaml": want text or json`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, stderr := runCommand(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, s := range tc.contains {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, stderr)
				}
			}
		})
	}
}

// TestValidateReportsEveryMistakeOfADocument validates a document with
// values of the wrong type, an unknown field and a mistake the compiler
// finds: each is on a line of its own that starts with the file and line.
func TestValidateReportsEveryMistakeOfADocument(t *testing.T) {
	file := writeFile(t, t.TempDir(), "p.yaml", `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: api
  namespace: shop
spec:
  jwt:
    issuer: https://auth.example.com
    jwksURI: https://auth.example.com/jwks
  limits:
    - name: per-user
      requests: "one hundred"
      period: forever
      by: user
  rules:
    - name: health
      path: /api/health
      anonymus: true
`)
	code, stdout, stderr := runCommand(t, "validate", file)
	if code != 1 || stdout != "" {
		t.Fatalf("exit code %d, stdout %q; want 1 and nothing", code, stdout)
	}
	want := []string{
		file + `:12: shop/api: spec.limits[0].requests: must be a whole number, not the string "one hundred"`,
		file + `:13: shop/api: spec.limits[0].period: Invalid value: "forever"`,
		file + `:18: shop/api: spec.rules[0].anonymus: unknown field "anonymus" (did you mean "anonymous"?)`,
		"tollgate: 3 error(s) found",
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(want), stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i], w)
		}
	}
}

// TestValidateBurst: burst, on a limit and on a tier, is a known field
// with its bounds, and a misspelt one is named with the field meant.
func TestValidateBurst(t *testing.T) {
	const doc = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: api
  namespace: shop
spec:
  jwt:
    issuer: https://auth.example.com
    jwksURI: https://auth.example.com/jwks
  rules:
    - name: tasks
      path: /api/tasks
      limits:
        - name: per-user
          requests: 100
          period: 15m
          by: user
          %s
          tiers:
            claim: plan
            values:
              premium: {requests: 1000, %s}
`
	tests := map[string]struct {
		limit, tier string
		code        int
		want        string // a line of stderr starts with file + want
	}{
		"a burst on a limit and a tier is valid": {limit: "burst: 10", tier: "burst: 50", code: 0},
		"a tier without burst takes the limit's": {limit: "burst: 10", tier: "period: 1h", code: 0},
		"a misspelt burst is named with the meant one": {limit: "burts: 10", tier: "period: 1h", code: 1,
			want: `:18: shop/api: spec.rules[0].limits[0].burts: unknown field "burts" (did you mean "burst"?)`},
		"burst 0 is refused": {limit: "burst: 0", tier: "period: 1h", code: 1,
			want: `:18: shop/api: spec.rules[0].limits[0].burst: Invalid value: 0: burst must be between 1 and 1000000000`},
		"a burst that is no number is refused": {limit: "burst: ten", tier: "period: 1h", code: 1,
			want: `:18: shop/api: spec.rules[0].limits[0].burst: must be a whole number, not the string "ten"`},
		"a tier's burst over 1000 times its requests is refused": {limit: "burst: 10", tier: "burst: 1000001", code: 1,
			want: `:22: shop/api: spec.rules[0].limits[0].tiers.values[premium].burst: Invalid value: 1000001: burst must be at most 1000 times requests (1000)`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			file := writeFile(t, t.TempDir(), "p.yaml", fmt.Sprintf(doc, tc.limit, tc.tier))
			code, _, stderr := runCommand(t, "validate", file)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if tc.want != "" && !slices.ContainsFunc(strings.Split(stderr, "\n"), func(l string) bool { return strings.HasPrefix(l, file+tc.want) }) {
				t.Errorf("stderr has no line starting with %q:\n%s", file+tc.want, stderr)
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	type problem struct {
		File, Object, Field, Message, Severity string
		Line                                   int
	}
	type result struct {
		Valid                      bool
		Policies, Errors, Warnings int
		Problems                   []problem
	}
	dir := t.TempDir()
	writeFile(t, dir, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
	tests := map[string]struct {
		args []string
		code int
		want result
	}{
		"the samples": {
			args: []string{"../../config/samples"},
			want: result{Valid: true, Policies: 1, Problems: []problem{}},
		},
		"a file with mistakes and a missing path": {
			args: []string{"../../pkg/policyfile/testdata/invalid/many-mistakes.yaml", "nope.yaml"},
			code: 1,
			want: result{Policies: 1, Errors: 6, Problems: []problem{
				{File: "nope.yaml", Message: "no such file or directory", Severity: "error"},
			}},
		},
		"a key setting error names its field and line, as every other error": {
			args: []string{"testdata/validate/jwks-not-json.yaml"},
			code: 1,
			want: result{Policies: 1, Errors: 1, Problems: []problem{
				{File: "testdata/validate/jwks-not-json.yaml", Line: 6, Object: "shop/bad-jwks", Field: "spec.jwt", Severity: "error",
					Message: "token: invalid settings: inline jwks: decode jwks: invalid character 'o' in literal null (expecting 'u')"},
			}},
		},
		"only a warning": {
			args: []string{dir},
			code: 1,
			want: result{Warnings: 1, Problems: []problem{
				{File: dir + "/cm.yaml", Object: "document 1", Message: "not a tollgate AuthPolicy; skipped: v1 ConfigMap", Severity: "warning"},
			}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCommand(t, append([]string{"validate", "-o", "json"}, tc.args...)...)
			if code != tc.code || stderr != "" {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			var got result
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatalf("output is not one JSON object: %v\n%s", err, stdout)
			}
			if got.Valid != tc.want.Valid || got.Policies != tc.want.Policies || got.Errors != tc.want.Errors || got.Warnings != tc.want.Warnings || got.Problems == nil {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			for _, w := range tc.want.Problems {
				if !slices.Contains(got.Problems, w) {
					t.Errorf("no problem %+v in %+v", w, got.Problems)
				}
			}
			for _, p := range got.Problems {
				if p.Field != "" && p.Line == 0 {
					t.Errorf("problem %+v has a field but no line", p)
				}
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := runCommand(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "tollgate ") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("version: code %d, output %q", code, stdout)
	}
}
