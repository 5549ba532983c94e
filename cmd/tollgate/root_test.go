package main

import (
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/version"
)

// TestCommandLine checks what every command shares: help, version, exit
// status 2 for usage errors, suggestions for typos, and environment
// variables named as such.
func TestCommandLine(t *testing.T) {
	tests := map[string]struct {
		env  map[string]string
		args []string
		code int
		// stdout and stderr must contain these; noStdout wants it empty.
		stdout, stderr []string
		noStdout       bool
	}{
		"tollgate alone prints help on stderr and exits 2": {
			args: nil, code: 2, noStdout: true,
			stderr: []string{"Usage:", "Available Commands:", "serve", "validate"},
		},
		"--version prints the version": {
			args: []string{"--version"}, code: 0, stdout: []string{version.String() + "\n"},
		},
		"-v too": {
			args: []string{"-v"}, code: 0, stdout: []string{version.String()},
		},
		"a mistyped command is suggested": {
			args: []string{"serv"}, code: 2, noStdout: true,
			stderr: []string{`tollgate: unknown command "serv" for "tollgate" (did you mean "serve"?)`},
		},
		"a mistyped flag is suggested": {
			args: []string{"serve", "--polcy-dir", "x"}, code: 2,
			stderr: []string{"tollgate: unknown flag: --polcy-dir (did you mean --policy-dir?)"},
		},
		"a flag name cut short is suggested": {
			args: []string{"check", "--path", "/", "--polic", "x"}, code: 2,
			stderr: []string{"unknown flag: --polic (did you mean --policy"},
		},
		"a flag like no other is not": {
			args: []string{"validate", "--zzzzzzzz", "x"}, code: 2,
			stderr: []string{"tollgate: unknown flag: --zzzzzzzz\n"},
		},
		"a root flag typo is suggested": {
			args: []string{"--verson"}, code: 2,
			stderr: []string{"(did you mean --version?)"},
		},
		"help names the environment variables": {
			args: []string{"serve", "--help"}, code: 0,
			stdout: []string{"--policy-dir", "TOLLGATE_POLICY_DIR", "A flag on the command line wins"},
		},
		"check's help too": {
			args: []string{"check", "--help"}, code: 0, stdout: []string{"TOLLGATE_"},
		},
		"help says what the exit codes mean": {
			args: []string{"--help"}, code: 0, stdout: []string{"Exit status:", "2 a usage error"},
		},
		"a check flag from the environment is named as the variable": {
			env:  map[string]string{"TOLLGATE_OUTPUT": "yaml"},
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/"}, code: 2,
			stderr: []string{`tollgate: TOLLGATE_OUTPUT "yaml": want text or json`},
		},
		"the same mistake on the command line is named as the flag": {
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/", "-o", "yaml"}, code: 2,
			stderr: []string{`tollgate: --output "yaml": want text or json`},
		},
		"a token ttl from the environment": {
			env:  map[string]string{"TOLLGATE_TTL": "-1m"},
			args: []string{"token", "--key", "unused.json", "--sub", "a"}, code: 2,
			stderr: []string{`tollgate: TOLLGATE_TTL "-1m0s": must not be negative`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCommand(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit code %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			if tc.noStdout && stdout != "" {
				t.Errorf("stdout not empty:\n%s", stdout)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, stderr)
				}
			}
		})
	}
}
