package proxies_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/progtest"
	"github.com/tollgate-dev/tollgate/internal/testlog"
)

// startTimeout bounds how long tollgate or a proxy may take to come up.
const startTimeout = 30 * time.Second

// tollgateBin is cmd/tollgate built from this tree, once per test binary.
var tollgateBin = &progtest.Build{Package: progtest.TollgatePackage}

func TestMain(m *testing.M) {
	code := m.Run()
	tollgateBin.Remove()
	os.Exit(code)
}

// freePort returns a loopback port that was free a moment ago. Callers
// retry when it is taken before they bind it.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a child process whose output is kept for the test's log.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *testlog.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // the exit error; read only after exited is closed
}

// startProcess starts a child and arranges for it to be killed and its
// output logged (when the test failed) at cleanup.
func startProcess(t *testing.T, name, bin string, args []string, env []string) (*process, error) {
	t.Helper()
	p := &process{name: name, out: &testlog.Buffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	dieWithParent(p.cmd)
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop kills the process and waits for it.
func (p *process) stop() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitReady polls ready until it reports true, the process exits or the
// start timeout passes.
func (p *process) waitReady(ready func() bool) error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.out.String())
		default:
		}
		if ready() {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	return fmt.Errorf("%s not ready after %s\n%s", p.name, startTimeout, p.out.String())
}

// childEnv is the environment for children: this process's, without
// TOLLGATE_* variables that would change tollgate's flags behind the
// test's back.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TOLLGATE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// tollgate is a running `tollgate serve`.
type tollgate struct {
	// HTTPAddr is the HTTP authorization endpoint, 127.0.0.1:port.
	HTTPAddr string
}

// startTollgate runs the tollgate binary built from this tree with the
// policies in policyYAML and --forward-auth mode, and waits until /readyz
// answers 200.
func startTollgate(t *testing.T, mode, policyYAML string) *tollgate {
	t.Helper()
	bin := tollgateBin.Path(t)
	dir := t.TempDir()
	policies := filepath.Join(dir, "policies")
	if err := os.Mkdir(policies, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "policy.yaml"), []byte(policyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	// A port found free may be taken before tollgate binds it: retry.
	for range 5 {
		grpcAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		healthAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
		p, err := startProcess(t, "tollgate", bin, []string{
			"serve",
			"--policy-dir", policies,
			"--grpc-addr", grpcAddr,
			"--http-addr", httpAddr,
			"--health-addr", healthAddr,
			"--metrics-addr", "",
			"--forward-auth", mode,
			"--xff-trusted-hops", "1",
			"--log-format", "text",
		}, childEnv())
		if err != nil {
			t.Fatal(err)
		}
		lastErr = p.waitReady(func() bool { return httpStatus("http://"+healthAddr+"/readyz") == http.StatusOK })
		if lastErr == nil {
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("tollgate output:\n%s", p.out.String())
				}
			})
			return &tollgate{HTTPAddr: httpAddr}
		}
		p.stop()
		if !errPortInUse(lastErr) {
			break
		}
	}
	t.Fatalf("start tollgate: %v", lastErr)
	return nil
}

// httpStatus GETs url and returns the status, 0 when there is no answer.
func httpStatus(url string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// portOpen reports whether something accepts connections on addr.
func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// caseHeader tags each request the tests send, so that the upstream's
// record can be searched per case. Proxies pass it through.
const caseHeader = "X-Test-Case"

// seenRequest is a request as the upstream received it.
type seenRequest struct {
	Method string
	URI    string // the request target, raw
	Host   string
	Header http.Header
}

// upstream is the API behind the proxy: it answers 200 and records what
// it received.
type upstream struct {
	Addr string

	mu   sync.Mutex // guards seen
	seen []seenRequest
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, seenRequest{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("upstream"))
	}))
	t.Cleanup(srv.Close)
	u.Addr = srv.Listener.Addr().String()
	return u
}

// requests returns what the upstream received for one test case.
func (u *upstream) requests(caseID string) []seenRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []seenRequest
	for _, r := range u.seen {
		if r.Header.Get(caseHeader) == caseID {
			out = append(out, r)
		}
	}
	return out
}

// substitute replaces each key of repl in text by its value, failing the
// test unless each occurs exactly once: the test runs the example as
// shipped, with only its addresses changed.
func substitute(t *testing.T, name, text string, repl [][2]string) string {
	t.Helper()
	for _, r := range repl {
		if n := strings.Count(text, r[0]); n != 1 {
			t.Fatalf("%s: %q occurs %d times, want once", name, r[0], n)
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	return text
}

// errPortInUse reports whether a process's output says its port was taken.
func errPortInUse(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "Address already in use") || strings.Contains(err.Error(), "address already in use"))
}

// launch says how to run a proxy.
type launch struct {
	bin       string
	args, env []string
	// log is a file the proxy logs to besides its output, if any.
	log string
}

// startProxy runs a proxy that listens on 127.0.0.1:port, set up by setup
// in a fresh directory, waits until it accepts connections and returns its
// base URL. It retries with another port when the port was taken.
func startProxy(t *testing.T, name string, setup func(dir, port string) launch) string {
	t.Helper()
	var lastErr error
	for range 5 {
		dir := t.TempDir()
		port := strconv.Itoa(freePort(t))
		l := setup(dir, port)
		p, err := startProcess(t, name, l.bin, l.args, l.env)
		if err != nil {
			t.Fatal(err)
		}
		output := func() string {
			if l.log == "" {
				return p.out.String()
			}
			return p.out.String() + fileText(l.log)
		}
		addr := "127.0.0.1:" + port
		if lastErr = p.waitReady(func() bool { return portOpen(addr) }); lastErr == nil {
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("%s output:\n%s", name, output())
				}
			})
			return "http://" + addr
		}
		lastErr = fmt.Errorf("%w\n%s", lastErr, output())
		p.stop()
		if !errPortInUse(lastErr) {
			break
		}
	}
	t.Fatalf("start %s: %v", name, lastErr)
	return ""
}

// fileText returns a file's contents, or why it could not be read.
func fileText(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}
