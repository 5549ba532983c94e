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
		// stdout and stderr must contain these; noStdout wants it empty;
		// stderr must not contain notStderr.
		stdout, stderr []string
		notStderr      []string
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
		"a misspelt variable is a warning with the variable meant": {
			env:  map[string]string{"TOLLGATE_OUTPT": "json"},
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/"}, code: 1,
			stderr: []string{"tollgate: warning: TOLLGATE_OUTPT sets no flag of tollgate check and is ignored (did you mean TOLLGATE_OUTPUT?)\n"},
		},
		"a variable in the wrong case is one too": {
			env:  map[string]string{"TOLLGATE_output": "json"},
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/"}, code: 1,
			stderr: []string{"TOLLGATE_output sets no flag of tollgate check and is ignored (did you mean TOLLGATE_OUTPUT?)"},
		},
		"a variable of another command says whose it is": {
			env:  map[string]string{"TOLLGATE_TTL": "1m"},
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/"}, code: 1,
			stderr: []string{"tollgate: warning: TOLLGATE_TTL sets no flag of tollgate check and is ignored (it sets --ttl of tollgate token)\n"},
		},
		"a variable like no flag is named alone": {
			env:  map[string]string{"TOLLGATE_ZZZZZZZZ": "1"},
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/"}, code: 1,
			stderr: []string{"tollgate: warning: TOLLGATE_ZZZZZZZZ sets no flag of tollgate check and is ignored\n"},
		},
		"variables of the command are not warned about": {
			env:  map[string]string{"TOLLGATE_OUTPUT": "json", "TOLLGATE_METHOD": "GET"},
			args: []string{"check", "--policy-dir", "../../config/samples", "--path", "/"}, code: 1,
			notStderr: []string{"warning"},
		},
		"a command without flags reads no variable and warns about none": {
			env:  map[string]string{"TOLLGATE_OUTPT": "json"},
			args: []string{"version"}, code: 0, notStderr: []string{"warning"},
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
				if n := strings.Count(stderr, s); n > 1 && strings.Contains(s, "warning:") {
					t.Errorf("stderr has %q %d times:\n%s", s, n, stderr)
				}
			}
			for _, s := range tc.notStderr {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr contains %q:\n%s", s, stderr)
				}
			}
		})
	}
}
