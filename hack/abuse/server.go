package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/internal/procstat"
)

// A server is a running tollgate serve.
type server struct {
	pid                         int
	grpc, http, health, metrics string
	cmd                         *exec.Cmd
	logPath                     string
}

// startServer starts tollgate serve on free loopback ports (pinned to the
// server CPUs, with RLIMIT_NOFILE nofile when not 0) and waits for /readyz.
func startServer(ctx context.Context, c *config, fx *fixture, name string, nofile int) (*server, error) {
	srv := &server{grpc: freeAddr(), http: freeAddr(), health: freeAddr(), metrics: freeAddr()}
	args := append([]string{"serve", "--policy-dir", fx.policyDir,
		"--grpc-addr", srv.grpc, "--http-addr", srv.http, "--metrics-addr", srv.metrics, "--health-addr", srv.health}, c.serveArgs...)
	bin := c.tollgate
	if nofile > 0 {
		// prlimit and taskset exec the command: the pid stays the server's.
		args = append([]string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), bin}, args...)
		bin = "prlimit"
	}
	if c.serverCPU != "" {
		args = append([]string{"-c", c.serverCPU, bin}, args...)
		bin = "taskset"
	}
	srv.logPath = filepath.Join(filepath.Dir(fx.policyDir), name+".log")
	logf, err := os.Create(srv.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	srv.cmd = exec.Command(bin, args...)
	srv.cmd.Stdout, srv.cmd.Stderr = logf, logf
	if err := srv.cmd.Start(); err != nil {
		return nil, err
	}
	srv.pid = srv.cmd.Process.Pid
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, err := get("http://"+srv.health+"/readyz", time.Second)
		if err == nil && code == http.StatusOK {
			return srv, nil
		}
		if time.Now().After(deadline) {
			srv.stop()
			return nil, fmt.Errorf("not ready within 20s (%v, %d); log in %s", err, code, srv.logPath)
		}
		select {
		case <-ctx.Done():
			srv.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop kills the server: the run measures floods, not shutdown.
func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// memory returns the server's resident set size and its peak (VmRSS,
// VmHWM), in bytes.
func (s *server) memory() (rss, peak int64, err error) {
	return procstat.Memory(s.pid)
}

// fds returns how many file descriptors the server has open.
func (s *server) fds() int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return -1
	}
	return len(entries)
}

// logMentions counts the server log's lines that contain substr.
func (s *server) logMentions(substr string) int {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return -1
	}
	return strings.Count(string(b), substr)
}

// get fetches url within timeout and returns its status and body.
func get(url string, timeout time.Duration) (int, string, error) {
	return do(&http.Request{Method: http.MethodGet, Header: http.Header{}}, url, timeout)
}

func do(req *http.Request, url string, timeout time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, req.Method, url, nil)
	if err != nil {
		return 0, "", err
	}
	r.Header = req.Header
	// A new connection each time: a pooled one would hide a listener that
	// no longer accepts.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(r)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, err = bufio.NewReader(resp.Body).WriteTo(&body)
	return resp.StatusCode, body.String(), err
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// taskset pins every thread of process pid to cpus.
func taskset(cpus string, pid int) error {
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset: %w: %s", err, out)
	}
	return nil
}
