package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCommand runs tollgate with args and returns its exit code, stdout and
// stderr (with the error message main prints), as the process would.
func runCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := newRootCommand()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
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
				"many-mistakes.yaml: shop/broken: spec.rules[0].owner.path",
				"many-mistakes.yaml: shop/broken: spec.limits[0].requests",
				"many-mistakes.yaml: shop/broken: spec.limits[0].period",
				"many-mistakes.yaml: shop/broken: spec.limits[0].by",
				"many-mistakes.yaml: shop/broken: spec.jwt",
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
			contains: []string{"jwks-not-json.yaml: shop/bad-jwks: spec.jwt: token: invalid settings: inline jwks"},
		},
		"a missing file is an error": {
			args:     []string{"validate", "does-not-exist.yaml"},
			code:     1,
			contains: []string{"does-not-exist.yaml"},
		},
		"no argument is a usage error": {
			args: []string{"validate"},
			code: 2,
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

func TestVersion(t *testing.T) {
	code, stdout, _ := runCommand(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "tollgate ") || !strings.Contains(stdout, "go1.") {
		t.Fatalf("version: code %d, output %q", code, stdout)
	}
}
