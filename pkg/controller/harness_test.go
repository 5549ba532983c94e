package controller_test

// The tests of this package run tollgate (pkg/server, in-process or as a
// child process) with the controller against a real kube-apiserver and
// etcd (envtest), acting as tollgate's service account with exactly the
// RBAC of config/rbac, and decide requests over real gRPC.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-logr/logr"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/deploy"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
	"github.com/tollgate-dev/tollgate/internal/testlog"
	"github.com/tollgate-dev/tollgate/pkg/controller"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policy/policytest"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

const issuer = "https://auth.example.test"

// serviceAccount is the user tollgate acts as: the ServiceAccount of
// config/rbac, installed in deploy.Namespace.
var serviceAccount = "system:serviceaccount:" + deploy.Namespace + ":tollgate"

var (
	controlPlane kubetest.Shared
	rbacOnce     sync.Once
	rbacErr      error
)

func TestMain(m *testing.M) {
	// controller-runtime's informers log through its process-wide logger;
	// tollgate's own logs go to each instance's buffer.
	ctrllog.SetLogger(logr.Discard())
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperServe())
	}
	code := m.Run()
	controlPlane.Stop()
	os.Exit(code)
}

// kube returns the shared control plane, with config/rbac installed.
func kube(t testing.TB) *kubetest.Env {
	t.Helper()
	env := controlPlane.Get(t)
	rbacOnce.Do(func() { rbacErr = installRBAC(env) })
	if rbacErr != nil {
		t.Fatal(rbacErr)
	}
	return env
}

// installRBAC creates the ServiceAccount, roles and bindings of
// config/rbac, with kustomize's placeholder namespace "system" replaced by
// deploy.Namespace.
func installRBAC(env *kubetest.Env) error {
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deploy.Namespace}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	root, err := kubetest.ModuleRoot()
	if err != nil {
		return err
	}
	for _, f := range []string{"service_account.yaml", "role.yaml", "role_binding.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "config", "rbac", f))
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(data), "\n---") {
			doc = strings.ReplaceAll(doc, "namespace: system", "namespace: "+deploy.Namespace)
			var obj unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if err := env.Client.Create(ctx, &obj); err != nil {
				return fmt.Errorf("%s: create %s %s: %w", f, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
	return nil
}

// scene sets up a test: a fresh namespace (its AuthPolicies deleted at
// the end) and a ready tollgate watching every namespace.
func scene(t testing.TB, prefix string) (*kubetest.Env, string, *instance) {
	t.Helper()
	env := kube(t)
	ns := env.Namespace(t, prefix)
	cleanup(t, env.Client, ns)
	return env, ns, start(t, asTollgate(t, env), config{})
}

// asTollgate writes a kubeconfig that acts as tollgate's ServiceAccount.
func asTollgate(t testing.TB, env *kubetest.Env) string {
	return env.WriteKubeconfig(t, kubetest.KubeconfigOptions{As: serviceAccount})
}

// An instance is one running tollgate.
type instance struct {
	t     testing.TB
	conn  *grpc.ClientConn
	auth  authv3.AuthorizationClient
	addrs map[string]string
	logs  *testlog.Buffer
	stop  func() // in-process: cancel and wait; child: SIGKILL and wait
	pid   int    // of a child process; 0 in-process
}

// config is what a test chooses of an instance's controller: the watched
// namespace (empty: all) and the leader election (no LeaseID:
// --leader-elect=false), with short lease timings.
type config struct {
	Namespace    string
	SecretLabels string
	LeaseID      string
	Lease        time.Duration
	Renew, Retry time.Duration
}

// shortLease is leader election on a Lease of its own (named after ns)
// with timings short enough for tests.
func shortLease(ns string) config {
	return config{LeaseID: "tollgate-" + ns, Lease: 3 * time.Second, Renew: 2 * time.Second, Retry: 250 * time.Millisecond}
}

// controllerOptions is what `tollgate serve --kubernetes --kubeconfig K`
// builds, as c says.
func controllerOptions(kubeconfig string, c config) (*controller.Options, error) {
	cfg, err := controller.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	sel, err := labels.Parse(c.SecretLabels)
	if err != nil {
		return nil, err
	}
	o := &controller.Options{Config: cfg, Namespace: c.Namespace, SecretSelector: sel}
	if c.LeaseID != "" {
		o.LeaderElect = true
		o.LeaderElectionID = c.LeaseID
		o.LeaderElectionNamespace = deploy.Namespace
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = c.Lease, c.Renew, c.Retry
	}
	return o, nil
}

func serverOptions(kube *controller.Options, log io.Writer) server.Options {
	return server.Options{
		GRPCAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0",
		TokenCacheSize: 1000,
		Kubernetes:     kube,
		Logger:         slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// start runs tollgate in this process with the controller on kubeconfig,
// and waits until it is ready.
func start(t testing.TB, kubeconfig string, c config, mutate ...func(*server.Options)) *instance {
	t.Helper()
	in := startUnready(t, kubeconfig, c, mutate...)
	in.waitReady()
	return in
}

// startUnready runs tollgate in this process without waiting for ready.
func startUnready(t testing.TB, kubeconfig string, c config, mutate ...func(*server.Options)) *instance {
	t.Helper()
	kopts, err := controllerOptions(kubeconfig, c)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	opts := serverOptions(kopts, logs)
	for _, m := range mutate {
		m(&opts)
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	in := &instance{t: t, logs: logs, addrs: map[string]string{
		"grpc": srv.Addr("grpc"), "metrics": srv.Addr("metrics"), "health": srv.Addr("health"),
	}}
	in.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("tollgate: %v", err)
			}
		})
	}
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("tollgate logs:\n%s", logs.String())
		}
	})
	in.dial()
	return in
}

func (in *instance) dial() {
	conn, err := grpc.NewClient(in.addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(func() { conn.Close() })
	in.conn, in.auth = conn, authv3.NewAuthorizationClient(conn)
}

// waitReady waits for /readyz to answer 200. Starting is not under test
// here, so the deadline is generous.
func (in *instance) waitReady() {
	in.t.Helper()
	eventually(in.t, 60*time.Second, "tollgate ready", func() bool { return in.readyz() == http.StatusOK })
}

// readyz returns the status of /readyz.
func (in *instance) readyz() int {
	resp, err := http.Get("http://" + in.addrs["health"] + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// check sends a gRPC Check for method host path with an optional bearer
// token and returns the HTTP status Envoy would act on (200 allows).
func (in *instance) check(host, method, path, token string) int {
	in.t.Helper()
	hs := map[string]string{":authority": host, ":method": method, ":path": path}
	if token != "" {
		hs["authorization"] = "Bearer " + token
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.7"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Host: host, Path: path, Headers: hs,
		}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := in.auth.Check(ctx, req)
	if err != nil {
		in.t.Fatalf("Check %s %s%s: %v", method, host, path, err)
	}
	if resp.GetOkResponse() != nil {
		return http.StatusOK
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// metric returns the value of a counter or gauge on the instance's
// /metrics, summed over the series whose labels include labels.
func (in *instance) metric(name string, labels map[string]string) float64 {
	in.t.Helper()
	resp, err := http.Get("http://" + in.addrs["metrics"] + "/metrics")
	if err != nil {
		in.t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		in.t.Fatalf("scrape: %d %v\n%s", resp.StatusCode, err, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		in.t.Fatalf("parse /metrics: %v", err)
	}
	var sum float64
	for _, m := range families[name].GetMetric() {
		if hasLabels(m, labels) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// statusWrites is how many status patches the instance sent.
func (in *instance) statusWrites() float64 {
	return in.metric("tollgate_status_writes_total", map[string]string{"result": "success"})
}

func (in *instance) leading() bool { return in.metric("tollgate_status_leader", nil) == 1 }

// eventually polls cond every 10ms until it holds, failing t after d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	poll(t, d, 10*time.Millisecond, what, cond)
}

// poll checks cond every interval until it holds, failing t after d.
func poll(t testing.TB, d, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(interval)
	}
}

// enforcedWithin is the contract for applying a change: 2 s.
const enforcedWithin = 2 * time.Second

// expect polls until the instance answers want for the request.
func (in *instance) expect(d time.Duration, host, path, token string, want int) {
	in.t.Helper()
	var got int
	eventually(in.t, d, fmt.Sprintf("GET %s%s answered %d (last %d)", host, path, want, func() int { return got }()), func() bool {
		got = in.check(host, "GET", path, token)
		return got == want
	})
}

// ready returns the Ready condition of a policy when it describes the
// object's current generation.
func ready(t testing.TB, c client.Client, ns, name string) *metav1.Condition {
	t.Helper()
	var ap v1alpha1.AuthPolicy
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ap); err != nil {
		t.Fatalf("get %s/%s: %v", ns, name, err)
	}
	cond := meta.FindStatusCondition(ap.Status.Conditions, v1alpha1.ConditionReady)
	if cond == nil || ap.Status.ObservedGeneration != ap.Generation || cond.ObservedGeneration != ap.Generation {
		return nil
	}
	return cond
}

// waitStatus waits until a policy's Ready condition, for its current
// generation, has status and reason and a message containing each of
// contains.
func waitStatus(t testing.TB, c client.Client, ns, name string, status metav1.ConditionStatus, reason string, contains ...string) *metav1.Condition {
	t.Helper()
	var last *metav1.Condition
	eventually(t, 30*time.Second, fmt.Sprintf("%s/%s Ready=%s %s %q", ns, name, status, reason, contains), func() bool {
		last = ready(t, c, ns, name)
		if last == nil || last.Status != status || last.Reason != reason {
			return false
		}
		for _, s := range contains {
			if !strings.Contains(last.Message, s) {
				return false
			}
		}
		return true
	})
	return last
}

// policy returns ns/name for host under /api, with an inline JWKS of key,
// and rules.
func policy(ns, name, host string, key *jwttest.Key, rules ...v1alpha1.Rule) *v1alpha1.AuthPolicy {
	mods := []policytest.Modifier{
		policytest.WithName(ns, name), policytest.WithHosts(host), policytest.WithPathPrefix("/api"),
		policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, JWKS: key.JWKS()}),
	}
	for _, r := range rules {
		mods = append(mods, policytest.WithRule(r))
	}
	ap := policytest.New(mods...)
	ap.TypeMeta = metav1.TypeMeta{}
	return ap
}

// private is a rule that needs a token for every path under /api.
func private() v1alpha1.Rule { return v1alpha1.Rule{Name: "private", Path: "/api/**"} }

func token(t testing.TB, key *jwttest.Key, sub string) string {
	return key.Mint(t, jwttest.Claims(sub, issuer, "", time.Now(), time.Hour))
}

func create(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %s: %v", obj.GetName(), err)
	}
}

// createOlder creates obj and waits until the API server's clock is past
// the second of its creationTimestamp, so that whatever is created next is
// strictly newer (timestamps have one-second resolution; a tie would be
// broken by name, not by order of creation).
func createOlder(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	create(t, c, obj)
	created := obj.GetCreationTimestamp().Time
	eventually(t, 5*time.Second, "the next second", func() bool { return time.Now().Truncate(time.Second).After(created) })
}

// edit re-reads a policy, changes it with f and updates it.
func edit(t testing.TB, c client.Client, ns, name string, f func(*v1alpha1.AuthPolicy)) {
	t.Helper()
	var ap v1alpha1.AuthPolicy
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ap); err != nil {
		t.Fatal(err)
	}
	f(&ap)
	if err := c.Update(context.Background(), &ap); err != nil {
		t.Fatalf("update %s/%s: %v", ns, name, err)
	}
}

func remove(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Delete(context.Background(), obj); err != nil {
		t.Fatalf("delete %s: %v", obj.GetName(), err)
	}
}

// cleanup deletes every AuthPolicy of the namespaces after the test, so
// later tests' tollgates do not load them.
func cleanup(t testing.TB, c client.Client, namespaces ...string) {
	t.Cleanup(func() {
		for _, ns := range namespaces {
			if err := c.DeleteAllOf(context.Background(), &v1alpha1.AuthPolicy{}, client.InNamespace(ns)); err != nil {
				t.Errorf("clean up %s: %v", ns, err)
			}
		}
	})
}

// The child process: tollgate run as a separate process, so that a test
// can kill it (SIGKILL: no Lease release, no goodbye).
const helperEnv = "TOLLGATE_TEST_CHILD"

// startChild runs tollgate in a child process with the controller on
// kubeconfig as c says, and waits until it is ready.
func startChild(t testing.TB, kubeconfig string, c config) *instance {
	t.Helper()
	in := startChildUnready(t, kubeconfig, c)
	in.waitReady()
	return in
}

// startChildUnready runs tollgate in a child process, once it listens.
func startChildUnready(t testing.TB, kubeconfig string, c config) *instance {
	t.Helper()
	conf, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(conf), "TOLLGATE_TEST_KUBECONFIG="+kubeconfig)
	logs := &testlog.Buffer{}
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	in := &instance{t: t, logs: logs, pid: cmd.Process.Pid}
	in.stop = func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(func() {
		in.stop()
		if t.Failed() {
			t.Logf("child tollgate logs:\n%s", logs.String())
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child tollgate did not start: %v\n%s", err, logs.String())
	}
	if err := json.Unmarshal([]byte(line), &in.addrs); err != nil {
		t.Fatalf("child tollgate: %q: %v", line, err)
	}
	go io.Copy(io.Discard, out)
	in.dial()
	return in
}

// helperServe is the child process's main: it serves until killed or
// signalled, after printing its addresses as one JSON line.
func helperServe() int {
	var c config
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	kopts, err := controllerOptions(os.Getenv("TOLLGATE_TEST_KUBECONFIG"), c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := server.New(serverOptions(kopts, os.Stderr))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	addrs, _ := json.Marshal(map[string]string{"grpc": srv.Addr("grpc"), "metrics": srv.Addr("metrics"), "health": srv.Addr("health")})
	fmt.Println(string(addrs))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// A tcpProxy stands between tollgate and the API server, so a test can
// make the API server unreachable (refuse every connection) and reachable
// again.
type tcpProxy struct {
	lis     net.Listener
	backend string

	mu       sync.Mutex // mu guards the fields below
	open     bool
	conns    []net.Conn
	refusals int
}

func newTCPProxy(t testing.TB, backend string, open bool) *tcpProxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{lis: lis, backend: backend, open: open}
	go p.serve()
	t.Cleanup(func() {
		lis.Close()
		p.setOpen(false)
	})
	return p
}

func (p *tcpProxy) addr() string { return p.lis.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if !p.open {
			p.refusals++
			p.mu.Unlock()
			c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.backend)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		go func() { io.Copy(b, c); b.Close() }()
		go func() { io.Copy(c, b); c.Close() }()
	}
}

// setOpen opens or closes the way through; closing also cuts every
// connection through it.
func (p *tcpProxy) setOpen(open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open = open
	if !open {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
	p.refusals = 0
}

// refused is how many connections were refused since the last setOpen.
func (p *tcpProxy) refused() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refusals
}
