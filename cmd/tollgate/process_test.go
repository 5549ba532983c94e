package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// The process tests run tollgate as a process of its own: this test
// binary, started again with asMainEnv set, runs main() instead of the
// tests (after lowering RLIMIT_NOFILE to nofileEnv, when set), so that
// signals, exit codes and descriptor limits are the real ones.
const (
	asMainEnv = "GO_TEST_TOLLGATE_MAIN"
	nofileEnv = "GO_TEST_TOLLGATE_NOFILE"
)

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) != "" {
		if n := os.Getenv(nofileEnv); n != "" {
			limit, err := strconv.ParseUint(n, 10, 64)
			if err == nil {
				err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit})
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "RLIMIT_NOFILE:", err)
				os.Exit(3)
			}
		}
		main()
	}
	os.Exit(m.Run())
}

// A process is a tollgate serve started by startServe.
type process struct {
	t                  *testing.T
	cmd                *exec.Cmd
	stderr             *lockedBuffer
	grpc, http, health string
	exited             chan struct{}
}

// startServe runs tollgate serve with args on loopback ports of its
// choosing (RLIMIT_NOFILE nofile when not 0) and waits until it is ready.
func startServe(t *testing.T, nofile int, args ...string) *process {
	t.Helper()
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--health-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"}, args...)
	p := &process{t: t, cmd: exec.Command(os.Args[0], args...), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), asMainEnv+"=1")
	if nofile > 0 {
		p.cmd.Env = append(p.cmd.Env, fmt.Sprintf("%s=%d", nofileEnv, nofile))
	}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("tollgate stderr:\n%s", p.stderr.String())
		}
	})
	p.waitFor("the serving log line", func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.stderr.String()))
		for sc.Scan() {
			var line struct{ Msg, GRPC, HTTP, Health string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "tollgate serving" {
				p.grpc, p.http, p.health = line.GRPC, line.HTTP, line.Health
				return true
			}
		}
		return false
	})
	p.waitFor("/readyz", func() bool { code, _ := p.get(p.health, "/readyz", nil); return code == http.StatusOK })
	return p
}

// waitFor polls cond until it holds, for at most 30 s.
func (p *process) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		select {
		case <-p.exited:
			p.t.Fatalf("tollgate exited (%v) while waiting for %s", p.cmd.ProcessState, what)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get requests path from addr on a connection of its own, and returns the
// status (0 when the request failed) and body.
func (p *process) get(addr, path string, header http.Header) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var body strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&body)
	return resp.StatusCode, body.String()
}

// forwardAuth asks the HTTP endpoint about a GET of path on api.example.com.
func (p *process) forwardAuth(path string) int {
	code, _ := p.get(p.http, "/", http.Header{
		"X-Forwarded-Method": {"GET"}, "X-Forwarded-Host": {"api.example.com"}, "X-Forwarded-Uri": {path},
	})
	return code
}

func (p *process) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *process) dial() *grpc.ClientConn {
	p.t.Helper()
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { conn.Close() })
	return conn
}

// anonymousPolicy allows anything on api.example.com without a token.
const anonymousPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: %s
  namespace: shop
spec:
  hosts: [%q]
  rules:
    - name: everything
      anonymous: true
`

func policyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "public.yaml", fmt.Sprintf(anonymousPolicy, "public", "api.example.com"))
	return dir
}

// check asks conn about a GET of path on api.example.com and returns the
// HTTP status of the answer, or the gRPC error.
func check(conn *grpc.ClientConn, path string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: path,
			Headers: map[string]string{":authority": "api.example.com", ":method": "GET", ":path": path},
		}},
	}})
	if err != nil {
		return 0, err
	}
	if resp.GetOkResponse() != nil {
		return http.StatusOK, nil
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode()), nil
}

func healthOf(t *testing.T, conn *grpc.ClientConn) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	return resp.GetStatus()
}

// TestServeDrainsOnSIGTERM: on SIGTERM, gRPC health and /readyz report
// NOT_SERVING while a client that keeps checking sees no error, on its
// connection or a new one, for the shutdown delay; a second SIGTERM ends
// the delay and the process exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	p := startServe(t, 0, "--policy-dir", policyDir(t), "--shutdown-delay", "1h", "--shutdown-grace", "5s")
	conn := p.dial()
	if s := healthOf(t, conn); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before SIGTERM: %v", s)
	}

	// The client checks without pause until told to stop.
	type tally struct{ ok, failed int }
	progress := make(chan tally, 1)
	stop := make(chan struct{})
	var firstErr error
	go func() {
		var n tally
		defer close(progress)
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, err := check(conn, "/api/tasks")
			if err != nil || code != http.StatusOK {
				if n.failed++; firstErr == nil {
					firstErr = fmt.Errorf("status %d, %v", code, err)
				}
			} else {
				n.ok++
			}
			select {
			case <-progress:
			default:
			}
			progress <- n
		}
	}()
	checked := func() tally {
		t.Helper()
		select {
		case n := <-progress:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("the client made no progress")
			return tally{}
		}
	}
	for checked().ok < 10 {
	}

	p.signal(syscall.SIGTERM)
	p.waitFor("gRPC health NOT_SERVING", func() bool { return healthOf(t, conn) == healthpb.HealthCheckResponse_NOT_SERVING })
	p.waitFor("/readyz 503", func() bool { code, _ := p.get(p.health, "/readyz", nil); return code == http.StatusServiceUnavailable })
	// Checks go on after health said NOT_SERVING: on the client's
	// connection, on a new one and over HTTP.
	for after := checked().ok; checked().ok < after+50; {
	}
	if code, err := check(p.dial(), "/api/tasks"); err != nil || code != http.StatusOK {
		t.Fatalf("a check on a new connection while draining: %d %v", code, err)
	}
	if code := p.forwardAuth("/api/tasks"); code != http.StatusOK {
		t.Fatalf("an HTTP check while draining: %d", code)
	}
	close(stop)
	var n tally
	for n = range progress {
	}
	if n.failed > 0 {
		t.Fatalf("%d of %d checks failed across SIGTERM; first: %v", n.failed, n.ok+n.failed, firstErr)
	}

	p.signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("exit code %d after the second SIGTERM", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tollgate did not exit after the second SIGTERM")
	}
}

// TestServeUnderIdleConnectionFlood: with descriptors limited as in a
// small container, thousands of connections that never send a byte do not
// keep /readyz, the HTTP port, new gRPC connections or a policy reload
// from working, and the server closes every one of them.
func TestServeUnderIdleConnectionFlood(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// As many connections as this process may open, up to 5,000, against
	// a server allowed half as many descriptors (1024 at most, a common
	// container limit).
	idle := min(5000, int(rl.Cur)-200)
	nofile := min(1024, idle/2)
	if nofile < 512 {
		t.Fatalf("RLIMIT_NOFILE %d is too small for this test: it needs 1224", rl.Cur)
	}
	dir := policyDir(t)
	p := startServe(t, nofile, "--policy-dir", dir)
	existing := p.dial()
	if code, err := check(existing, "/api/tasks"); err != nil || code != http.StatusOK {
		t.Fatalf("check before the flood: %d %v", code, err)
	}

	closed := make(chan struct{}, idle)
	for i := range idle {
		c, err := net.DialTimeout("tcp", p.grpc, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		go func() {
			// Read fails once the server closes the connection; what it
			// sends before (its HTTP/2 SETTINGS) is discarded.
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					closed <- struct{}{}
					return
				}
			}
		}()
	}

	if code, body := p.get(p.health, "/readyz", nil); code != http.StatusOK {
		t.Errorf("/readyz under the flood: %d %s", code, body)
	}
	if code := p.forwardAuth("/api/tasks"); code != http.StatusOK {
		t.Errorf("the HTTP port under the flood: %d", code)
	}
	if code, err := check(p.dial(), "/api/tasks"); err != nil || code != http.StatusOK {
		t.Errorf("a new gRPC connection under the flood: %d %v", code, err)
	}
	if code, err := check(existing, "/api/tasks"); err != nil || code != http.StatusOK {
		t.Errorf("the existing gRPC connection under the flood: %d %v", code, err)
	}
	writeFile(t, dir, "reloaded.yaml", fmt.Sprintf(anonymousPolicy, "reloaded", "reload.example.com"))
	p.waitFor("the added policy to be served", func() bool {
		_, body := p.get(p.health, "/readyz", nil)
		return strings.Contains(body, `"policies":2`)
	})

	// Those evicted to make room go at once, the rest at the handshake
	// timeout.
	for n := 0; n < idle; n++ {
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("the server closed %d of %d idle connections", n, idle)
		}
	}
	if strings.Contains(p.stderr.String(), "too many open files") {
		t.Error("the server ran out of descriptors")
	}
}
