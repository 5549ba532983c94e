package scripts_test

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/progtest"
	"github.com/tollgate-dev/tollgate/internal/testlog"
)

// runDeadline bounds each wait of the make run tests: start, graceful stop.
const runDeadline = 30 * time.Second

// makeRunTree returns a directory holding what `make run` uses (Makefile,
// hack/run.sh, config/samples and a built bin/tollgate) and an environment
// that moves every port of it to a free loopback port.
func makeRunTree(t *testing.T) (dir string, env []string, addrs map[string]string) {
	t.Helper()
	progtest.Need(t, "make", "make")
	bin := tollgateBin.Path(t)
	dir = t.TempDir()
	copyFiles(t, dir, "Makefile", "hack/run.sh")
	samples, err := filepath.Glob(filepath.Join(repoRoot, "config/samples/*"))
	if err != nil || len(samples) == 0 {
		t.Fatalf("config/samples: %v", err)
	}
	for _, s := range samples {
		rel, _ := filepath.Rel(repoRoot, s)
		copyFiles(t, dir, rel)
	}
	copyFile(t, bin, filepath.Join(dir, "bin/tollgate"), 0o755)

	addrs = map[string]string{}
	for _, name := range []string{"GRPC", "HTTP", "METRICS", "HEALTH"} {
		addrs[name] = freeAddr(t)
	}
	addrs["JWKS"] = freeAddr(t)
	for _, kv := range os.Environ() {
		// The outer make's jobserver and any TOLLGATE_* setting of the
		// caller stay out.
		if strings.HasPrefix(kv, "TOLLGATE_") || strings.HasPrefix(kv, "MAKE") || strings.HasPrefix(kv, "MFLAGS=") {
			continue
		}
		env = append(env, kv)
	}
	for _, name := range []string{"GRPC", "HTTP", "METRICS", "HEALTH"} {
		env = append(env, "TOLLGATE_"+name+"_ADDR="+addrs[name])
	}
	env = append(env, "RUN_JWKS_ADDR="+addrs["JWKS"])
	return dir, env, addrs
}

// makeRun starts `make run` (without rebuilding bin/tollgate) as the
// leader of a process group of its own, so that the test can see whether
// anything it started is left. The group is killed at cleanup.
func makeRun(t *testing.T, dir string, env []string) (*exec.Cmd, *testlog.Buffer, <-chan error) {
	t.Helper()
	out := &testlog.Buffer{}
	cmd := exec.Command("make", "--no-print-directory", "-o", "build", "run")
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("make run output:\n%s", out.String())
		}
	})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return cmd, out, exited
}

// groupGone waits until no process of group pgid is left.
func groupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(runDeadline)
	for {
		err := syscall.Kill(-pgid, 0)
		if errors.Is(err, syscall.ESRCH) {
			return
		}
		if time.Now().After(deadline) {
			ps, _ := exec.Command("ps", "-o", "pid,ppid,cmd", "-g", strconv.Itoa(pgid)).CombinedOutput()
			t.Fatalf("processes of make run still running after %s:\n%s", runDeadline, ps)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMakeRun runs `make run` as a user does: the banner once the server
// listens; a second `make run` that names the taken addresses before any
// banner and starts nothing; and SIGTERM to make's PID alone (not its
// process group) stopping the server and the JWKS server.
func TestMakeRun(t *testing.T) {
	dir, env, addrs := makeRunTree(t)
	first, out, exited := makeRun(t, dir, env)

	deadline := time.Now().Add(runDeadline)
	for !strings.Contains(out.String(), "tollgate is serving config/samples") {
		select {
		case err := <-exited:
			t.Fatalf("make run exited: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner within %s:\n%s", runDeadline, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addrs["HEALTH"] + "/readyz")
	if err != nil {
		t.Fatalf("the banner came before the server listened: %v", err)
	}
	resp.Body.Close()
	if !strings.Contains(out.String(), "http://"+addrs["HTTP"]+"/api/users/alice/tasks") {
		t.Errorf("the banner does not show the HTTP address in use (%s):\n%s", addrs["HTTP"], out.String())
	}

	t.Run("a second make run names the taken addresses and starts nothing", func(t *testing.T) {
		second, out2, exited2 := makeRun(t, dir, env)
		select {
		case err := <-exited2:
			if err == nil {
				t.Fatalf("second make run succeeded:\n%s", out2.String())
			}
		case <-time.After(runDeadline):
			t.Fatalf("second make run still running after %s:\n%s", runDeadline, out2.String())
		}
		got := out2.String()
		for _, name := range []string{"GRPC", "HTTP", "METRICS", "HEALTH", "JWKS"} {
			if !strings.Contains(got, addrs[name]+" (") {
				t.Errorf("output does not name the %s address %s:\n%s", name, addrs[name], got)
			}
		}
		if strings.Contains(got, "tollgate is serving") {
			t.Errorf("a banner was printed:\n%s", got)
		}
		groupGone(t, second.Process.Pid)
	})

	// make passes SIGTERM to its child (hack/run.sh), which must pass it
	// on to the server and stop the JWKS server.
	if err := syscall.Kill(first.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(runDeadline):
		t.Fatalf("make still running %s after SIGTERM", runDeadline)
	}
	groupGone(t, first.Process.Pid)
	if !strings.Contains(out.String(), "shutting down") {
		t.Errorf("the server did not shut down gracefully:\n%s", out.String())
	}
}
