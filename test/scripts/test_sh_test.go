package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/progtest"
)

// TestTestScriptLeavesServicesAlone runs hack/test.sh with a stand-in for
// every program it may call, each recording its command line, and checks
// that it runs lint and the tests without touching a service of the
// machine: the tests start their own redis-server on free ports.
func TestTestScriptLeavesServicesAlone(t *testing.T) {
	progtest.Need(t, "bash", "bash")
	tests := map[string]struct {
		// installed are the stand-ins present before the script runs.
		installed []string
		// want are calls that must be made.
		want []string
	}{
		"everything installed": {
			installed: []string{"redis-server", "redis-cli", "nginx", "caddy"},
			want:      []string{"make --no-print-directory lint", "go test -p 2"},
		},
		"redis-server installed by the script": {
			installed: []string{"nginx", "caddy"},
			want:      []string{"apt-get install", "make --no-print-directory lint", "go test -p 2"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			copyFiles(t, dir, "hack/test.sh")
			stubs := filepath.Join(dir, "stubs")
			calls := filepath.Join(dir, "calls")
			stub := "#!/bin/sh\necho \"${0##*/} $*\" >>\"$CALLS\"\n"
			write := func(path, body string) {
				t.Helper()
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// Every program a script could stop a service with, and those
			// test.sh runs.
			for _, p := range append([]string{"systemctl", "service", "pkill", "killall", "kill", "apt-get", "make", "go", "sudo"}, tc.installed...) {
				write(filepath.Join(stubs, p), stub)
			}
			write(filepath.Join(dir, "hack/envtest-tools.sh"), "#!/bin/sh\necho /nonexistent/envtest\n")

			bash, _ := exec.LookPath("bash")
			env, _ := exec.LookPath("env")
			// PATH holds the stand-ins, bash, env and dirname alone: a real program the
			// script reached for would fail the run.
			dirname, _ := exec.LookPath("dirname")
			for _, p := range []string{bash, env, dirname} {
				if err := os.Symlink(p, filepath.Join(stubs, filepath.Base(p))); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(filepath.Join(stubs, "bash"), "hack/test.sh")
			cmd.Dir = dir
			cmd.Env = []string{"PATH=" + stubs, "CALLS=" + calls, "HOME=" + dir}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("hack/test.sh: %v\n%s", err, out)
			}
			data, _ := os.ReadFile(calls)
			got := string(data)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("no call %q; calls:\n%s", w, got)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
				prog, _, _ := strings.Cut(line, " ")
				switch prog {
				case "systemctl", "service", "pkill", "killall", "kill", "sudo", "redis-cli", "redis-server":
					t.Errorf("hack/test.sh ran %q", line)
				}
			}
		})
	}
}
