// Command policybench measures tollgate serving many policies from files:
// start to Ready, one changed file to applied, idle CPU and RSS. It writes
// N generated AuthPolicies (internal/policygen: five rules each, one file
// each), starts `tollgate serve --policy-dir` on loopback and reads the
// process from /proc. hack/policybench.sh builds tollgate and runs it with
// the in-process Check-cost benchmark (make bench-policies).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/tollgate-dev/tollgate/internal/policygen"
	"github.com/tollgate-dev/tollgate/internal/procstat"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

type config struct {
	tollgate string
	n        int
	idle     time.Duration
	changes  int
	dir      string
}

func main() {
	var c config
	flag.StringVar(&c.tollgate, "tollgate", "bin/tollgate", "tollgate binary")
	flag.IntVar(&c.n, "n", 10_000, "number of AuthPolicies (one file each, five rules each)")
	flag.DurationVar(&c.idle, "idle", 30*time.Second, "how long idle CPU is measured")
	flag.IntVar(&c.changes, "changes", 5, "how many single-file changes are timed")
	flag.StringVar(&c.dir, "dir", "", "directory for the policy files (default: a temporary one, removed)")
	flag.Parse()
	if err := run(context.Background(), &c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "policybench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c *config, out io.Writer) error {
	_, jwks, err := jwt.GenerateEd25519()
	if err != nil {
		return err
	}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "policybench-"); err != nil {
			return err
		}
		defer os.RemoveAll(c.dir)
	}
	if err := policygen.WriteDir(c.dir, c.n, string(jwks)); err != nil {
		return err
	}
	addr := map[string]string{}
	for _, name := range []string{"grpc", "http", "metrics", "health"} {
		if addr[name], err = freeAddr(); err != nil {
			return err
		}
	}
	logFile, err := os.CreateTemp("", "policybench-*.log")
	if err != nil {
		return err
	}
	defer os.Remove(logFile.Name())
	defer logFile.Close()

	cmd := exec.Command(c.tollgate, "serve", "--policy-dir", c.dir,
		"--grpc-addr", addr["grpc"], "--http-addr", addr["http"], "--metrics-addr", addr["metrics"], "--health-addr", addr["health"],
		"--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	pid := cmd.Process.Pid

	if err := poll(ctx, 5*time.Minute, func() (bool, error) {
		resp, err := http.Get("http://" + addr["health"] + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		return fmt.Errorf("waiting for /readyz: %w (log %s)", err, logFile.Name())
	}
	ready := time.Since(start)
	readyCPU, err := procstat.CPUTime(pid)
	if err != nil {
		return err
	}
	for _, i := range []int{0, c.n - 1} {
		if code, err := check(addr["http"], i); err != nil || code != http.StatusOK {
			return fmt.Errorf("policy %d not served after Ready: %d %v", i, code, err)
		}
	}
	readyRSS, _, err := procstat.Memory(pid)
	if err != nil {
		return err
	}

	// Idle: nothing changes, nothing is asked.
	time.Sleep(2 * time.Second)
	cpu0, err := procstat.CPUTime(pid)
	if err != nil {
		return err
	}
	time.Sleep(c.idle)
	cpu1, err := procstat.CPUTime(pid)
	if err != nil {
		return err
	}
	idleShare := float64(cpu1-cpu0) / float64(c.idle)

	// One change at a time: policy i's /api/public/** stops being
	// anonymous; applied when the running server answers 401 there.
	var lat []time.Duration
	for k := range c.changes {
		i := (k*7919 + 17) % c.n
		if code, err := check(addr["http"], i); err != nil || code != http.StatusOK {
			return fmt.Errorf("policy %d before its change: %d %v", i, code, err)
		}
		t0 := time.Now()
		if err := os.WriteFile(filepath.Join(c.dir, policygen.File(i)), []byte(policygen.Policy(i, string(jwks), true)), 0o644); err != nil {
			return err
		}
		if err := poll(ctx, time.Minute, func() (bool, error) {
			code, err := check(addr["http"], i)
			return code == http.StatusUnauthorized, err
		}); err != nil {
			return fmt.Errorf("change of policy %d: %w", i, err)
		}
		lat = append(lat, time.Since(t0))
	}
	rss, peak, err := procstat.Memory(pid)
	if err != nil {
		return err
	}
	slices.Sort(lat)

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(out, "policies:              %d files, 5 rules each\n", c.n)
	fmt.Fprintf(out, "start to Ready:        %.2f s wall, %.2f s CPU\n", ready.Seconds(), readyCPU.Seconds())
	fmt.Fprintf(out, "one change applied:    min %.0f ms, median %.0f ms, max %.0f ms (%d changes; includes the 200 ms stability wait)\n",
		ms(lat[0]), ms(lat[len(lat)/2]), ms(lat[len(lat)-1]), len(lat))
	fmt.Fprintf(out, "idle CPU:              %.2f%% of a core over %s\n", 100*idleShare, c.idle)
	fmt.Fprintf(out, "RSS:                   %.0f MiB at Ready, %.0f MiB after the changes (peak %.0f MiB)\n", mb(readyRSS), mb(rss), mb(peak))
	fmt.Fprintf(out, "load average:          %s", load)
	return nil
}

// check asks the HTTP authorization endpoint about an anonymous GET of
// /api/public/x on policy i's host.
func check(addr string, i int) (int, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Host", policygen.Host(i))
	req.Header.Set("X-Forwarded-Uri", "/api/public/x")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// poll calls f every 2ms until it reports done, fails, or timeout passes.
func poll(ctx context.Context, timeout time.Duration, f func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		done, err := f()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("timed out")
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(b int64) float64         { return float64(b) / (1 << 20) }
