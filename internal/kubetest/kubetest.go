// Package kubetest starts a real control plane for tests: controller-runtime's
// envtest runs kube-apiserver and etcd (built by hack/envtest-tools.sh) with
// tollgate's CRDs from config/crd/bases installed.
//
// The binaries are found in KUBEBUILDER_ASSETS (what `make test` sets), else
// ENVTEST_BIN_DIR, else bin/envtest of the module. When none has them, tests
// that need a control plane are skipped on a developer machine and fail when
// CI is set, so a CI run can never pass by skipping them.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
)

// ErrNoAssets means no directory holds the envtest binaries.
var ErrNoAssets = errors.New("kubetest: envtest binaries not found (run hack/envtest-tools.sh, or `make test`)")

// An Env is a running kube-apiserver and etcd with tollgate's CRDs.
type Env struct {
	// Config talks to the API server as its administrator.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// Client is a client for Config with tollgate's and the core types.
	Client client.Client
	// Scheme holds the core types and tollgate's.
	Scheme *runtime.Scheme
	// AssetsDir is the directory the binaries came from (kubectl, when
	// built there, is next to them).
	AssetsDir string

	env *envtest.Environment
	dir string
}

// Assets returns the directory holding kube-apiserver and etcd, or
// ErrNoAssets.
func Assets() (string, error) {
	for _, d := range assetDirs() {
		if isExecutable(filepath.Join(d, "kube-apiserver")) && isExecutable(filepath.Join(d, "etcd")) {
			return d, nil
		}
	}
	return "", ErrNoAssets
}

// assetDirs are the directories that may hold the binaries, in the order
// they are looked in.
func assetDirs() []string {
	var dirs []string
	for _, v := range []string{"KUBEBUILDER_ASSETS", "ENVTEST_BIN_DIR"} {
		if d := os.Getenv(v); d != "" {
			dirs = append(dirs, d)
		}
	}
	if root, err := ModuleRoot(); err == nil {
		dirs = append(dirs, filepath.Join(root, "bin", "envtest"))
	}
	return dirs
}

// Tool returns the path of a binary that `hack/envtest-tools.sh NAME`
// builds next to kube-apiserver (helm, kubectl), looked for where Assets
// looks. When there is none it skips tb, or fails it when CI is set, as
// Require does.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	for _, d := range assetDirs() {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	Require(tb, fmt.Errorf("%w: no %s (run hack/envtest-tools.sh %s)", ErrNoAssets, name, name))
	return ""
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// ModuleRoot returns the directory of the go.mod above the working directory
// (a test's working directory is its package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Options change the control plane that StartWith starts.
type Options struct {
	// NoCRDs leaves tollgate's CRDs out, for tests that install them
	// (helm install, kubectl apply).
	NoCRDs bool
}

// Start starts a control plane with tollgate's CRDs installed. Stop it with
// Stop.
func Start() (*Env, error) { return StartWith(Options{}) }

// StartWith starts a control plane as o says. Stop it with Stop.
func StartWith(o Options) (*Env, error) {
	assets, err := Assets()
	if err != nil {
		return nil, err
	}
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubetest: scheme: %w", err)
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubetest: scheme: %w", err)
	}
	te := &envtest.Environment{BinaryAssetsDirectory: assets, Scheme: scheme}
	if !o.NoCRDs {
		te.CRDDirectoryPaths = []string{filepath.Join(root, "config", "crd", "bases")}
		te.ErrorIfCRDPathMissing = true
	}
	cfg, err := te.Start()
	if err != nil {
		// Start can fail after etcd and kube-apiserver are up (say, on a
		// CRD that does not install): stop what did start.
		_ = te.Stop()
		return nil, fmt.Errorf("kubetest: start control plane from %s: %w", assets, err)
	}
	e := &Env{Config: cfg, Scheme: scheme, AssetsDir: assets, env: te}
	if err := e.init(); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Env) init() error {
	var err error
	if e.Client, err = client.New(e.Config, client.Options{Scheme: e.Scheme}); err != nil {
		return fmt.Errorf("kubetest: client: %w", err)
	}
	if e.dir, err = os.MkdirTemp("", "kubetest-"); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, e.env.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("kubetest: write kubeconfig: %w", err)
	}
	return nil
}

// KubeconfigOptions changes the kubeconfig WriteKubeconfig writes.
type KubeconfigOptions struct {
	// As impersonates this user (with Groups), the way kubectl --as does:
	// requests are authorized with that user's RBAC, not the admin's.
	As     string
	Groups []string
	// Server replaces the API server URL (say, a proxy in front of it).
	Server string
}

// WriteKubeconfig writes a kubeconfig for the control plane, changed by
// o, into a temporary directory of tb and returns its path.
func (e *Env) WriteKubeconfig(tb testing.TB, o KubeconfigOptions) string {
	tb.Helper()
	cfg, err := clientcmd.Load(e.env.KubeConfig)
	if err != nil {
		tb.Fatalf("kubetest: parse kubeconfig: %v", err)
	}
	for _, a := range cfg.AuthInfos {
		a.Impersonate, a.ImpersonateGroups = o.As, o.Groups
	}
	if o.Server != "" {
		for _, c := range cfg.Clusters {
			c.Server = o.Server
		}
	}
	path := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		tb.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return path
}

// Stop stops the control plane and removes the kubeconfig.
func (e *Env) Stop() error {
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
	if err := e.env.Stop(); err != nil {
		return fmt.Errorf("kubetest: stop control plane: %w", err)
	}
	return nil
}

// Namespace creates a namespace named after prefix and returns its name.
// Namespaces are never deleted (envtest runs no namespace controller), so
// each test takes fresh ones.
func (e *Env) Namespace(tb testing.TB, prefix string) string {
	tb.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		tb.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// Require skips tb when err is ErrNoAssets outside CI, and fails it for
// any other error or when CI is set.
func Require(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNoAssets) && os.Getenv("CI") == "" {
		tb.Skip(err)
	}
	tb.Fatal(err)
}

// Shared is one control plane started on first use and shared by the
// tests of a package; stop it in TestMain after m.Run.
type Shared struct {
	// Options are the control plane's; set them before the first Get.
	Options Options

	once sync.Once
	env  *Env
	err  error
}

// Get returns the shared control plane, starting it on the first call, or
// skips or fails tb as Require does.
func (s *Shared) Get(tb testing.TB) *Env {
	tb.Helper()
	s.once.Do(func() { s.env, s.err = StartWith(s.Options) })
	Require(tb, s.err)
	return s.env
}

// Stop stops the control plane if it was started.
func (s *Shared) Stop() {
	if s.env != nil {
		if err := s.env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}
