package packaging_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/tollgate-dev/tollgate/internal/deploy"
)

func TestHelmLint(t *testing.T) {
	out, err := helm(t, "lint", "--strict", chartDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, values := range []string{"redis-3-replicas.values.yaml"} {
		if out, err := helm(t, "lint", "--strict", chartDir, "-f", filepath.Join("testdata", values)); err != nil {
			t.Errorf("with %s: %v\n%s", values, err, out)
		}
	}
}

// TestHelmPackage: `helm package` ships the CRD (crds/ is a copy, not a
// symlink, so every way of packaging keeps it) and the values schema.
func TestHelmPackage(t *testing.T) {
	dir := t.TempDir()
	if out, err := helm(t, "package", chartDir, "--destination", dir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tgzs, err := filepath.Glob(filepath.Join(dir, "tollgate-*.tgz"))
	if err != nil || len(tgzs) != 1 {
		t.Fatalf("helm package wrote %v (%v)", tgzs, err)
	}
	f, err := os.Open(tgzs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	crd, err := os.ReadFile(filepath.Join(repoRoot, "config", "crd", "bases", "tollgate.dev_authpolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := files["tollgate/crds/tollgate.dev_authpolicies.yaml"]; !ok || !bytes.Equal(got, crd) {
		t.Errorf("the package's crds/tollgate.dev_authpolicies.yaml is missing or differs from config/crd/bases (have %d files)", len(files))
	}
	for _, name := range []string{"tollgate/values.schema.json", "tollgate/templates/NOTES.txt"} {
		if _, ok := files[name]; !ok {
			t.Errorf("the package has no %s", name)
		}
	}
}

// TestHelmTemplateGolden renders the chart with its default values and with
// a production-like values file (Redis, 3 replicas), and compares the
// output with testdata/*.golden.yaml (go test ./test/packaging -update
// rewrites them).
func TestHelmTemplateGolden(t *testing.T) {
	for name, args := range map[string][]string{
		"default.golden.yaml":          nil,
		"redis-3-replicas.golden.yaml": {"-f", filepath.Join("testdata", "redis-3-replicas.values.yaml")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helmTemplate(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name, out)
		})
	}
}

// TestHelmRejectsBadValues: each wrong value fails `helm template` (and so
// `helm install`) with a message that names it.
func TestHelmRejectsBadValues(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string // a regexp the error must match
	}{
		"a string where replicas is an integer": {
			args: []string{"--set-string", "replicas=many"},
			want: `at '/replicas': got string, want integer`,
		},
		"a negative replica count": {
			args: []string{"--set", "replicas=-1"},
			want: `at '/replicas': .*minimum`,
		},
		"an unknown quota store": {
			args: []string{"--set", "quotaStore=etcd"},
			want: `at '/quotaStore': value must be one of '', 'memory', 'redis'`,
		},
		"an unknown default action": {
			args: []string{"--set", "defaultAction=maybe"},
			want: `at '/defaultAction'`,
		},
		"a forward-auth mode that does not exist": {
			args: []string{"--set", "forwardAuth=x-forwarded"},
			want: `at '/forwardAuth'`,
		},
		"a misspelled value (replica)": {
			args: []string{"--set", "replica=3"},
			want: `additional properties 'replica' not allowed`,
		},
		"a Redis address that is a number": {
			args: []string{"--set-json", `redis={"addr": 6379}`},
			want: `at '/redis/addr': got number, want string`,
		},
		"a Redis address without a port": {
			args: []string{"--set", "quotaStore=redis", "--set", "redis.addr=redis"},
			want: `at '/redis/addr'`,
		},
		"redis.addr and redis.address that differ": {
			args: []string{"--set", "redis.addr=r:6379", "--set", "redis.address=s:6379"},
			want: `redis.addr and redis.address`,
		},
		"redis.cluster with both redis.addr and redis.clusterAddrs": {
			args: []string{"--set", "redis.cluster=true", "--set", "redis.addr=r:6379", "--set", "redis.clusterAddrs={a:6379}"},
			want: `redis.cluster: set the seed nodes in one of redis.addr and redis.clusterAddrs`,
		},
		"a replicaCount that is a string": {
			args: []string{"--set-string", "replicaCount=many"},
			want: `at '/replicaCount': got string, want integer`,
		},
		"the Redis store without an address": {
			args: []string{"--set", "quotaStore=redis"},
			want: `quotaStore=redis needs exactly one of redis.addr and redis.clusterAddrs`,
		},
		"the Redis store with both an address and cluster addresses": {
			args: []string{"--set", "quotaStore=redis", "--set", "redis.addr=r:6379", "--set", "redis.clusterAddrs={a:6379}"},
			want: `quotaStore=redis needs exactly one of redis.addr and redis.clusterAddrs`,
		},
		"a Redis address with the memory store": {
			args: []string{"--set", "quotaStore=memory", "--set", "redis.addr=r:6379"},
			want: `redis.addr.* is set but quotaStore is memory`,
		},
		"leader election as a string": {
			args: []string{"--set-string", "leaderElection.enabled=yes"},
			want: `at '/leaderElection/enabled': got string, want boolean`,
		},
		"a shutdown grace as a duration string": {
			args: []string{"--set-string", "shutdown.graceSeconds=10s"},
			want: `at '/shutdown/graceSeconds': got string, want integer`,
		},
		"an extra argument that is not a flag": {
			args: []string{"--set", "extraArgs={serve}"},
			want: `at '/extraArgs/0'`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helmTemplate(t, tc.args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded:\n%.300s", tc.args, out)
			}
			if !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Errorf("helm template %v: error does not match %q:\n%v", tc.args, tc.want, err)
			}
		})
	}
}

// TestChartCRDIsGenerated: the chart's crds/ holds exactly the CRDs that
// controller-gen writes to config/crd/bases (`make manifests` copies them).
func TestChartCRDIsGenerated(t *testing.T) {
	list := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	bases := filepath.Join(repoRoot, "config", "crd", "bases")
	crds := filepath.Join(chartDir, "crds")
	if a, b := list(bases), list(crds); !slices.Equal(a, b) {
		t.Fatalf("config/crd/bases has %v, charts/tollgate/crds has %v: run make manifests", a, b)
	}
	for _, name := range list(bases) {
		a, err := os.ReadFile(filepath.Join(bases, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(crds, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("charts/tollgate/crds/%s differs from config/crd/bases/%s: run make manifests", name, name)
		}
	}
}

// TestChartServiceIsTheExamplesService: with release name tollgate in
// tollgate-system, the Service is the one internal/deploy names and every
// proxy example points at, with its port names and numbers, and each port
// reaches the container port of the same name.
func TestChartServiceIsTheExamplesService(t *testing.T) {
	objs := renderChart(t)
	var svc corev1.Service
	typed(t, find(t, objs, "Service", deploy.ServiceName), &svc)
	if svc.Namespace != deploy.Namespace {
		t.Errorf("Service namespace %q, want %q", svc.Namespace, deploy.Namespace)
	}
	var dep appsv1.Deployment
	typed(t, find(t, objs, "Deployment", deploy.ServiceName), &dep)
	containerPorts := map[string]int32{}
	for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	want := deploy.Ports()
	if len(svc.Spec.Ports) != len(want) {
		t.Fatalf("Service ports %v, want %v", svc.Spec.Ports, want)
	}
	for i, p := range svc.Spec.Ports {
		if p.Name != want[i].Name || p.Port != want[i].Port {
			t.Errorf("Service port %d is %s:%d, want %s:%d", i, p.Name, p.Port, want[i].Name, want[i].Port)
		}
		if p.TargetPort.StrVal != p.Name || containerPorts[p.Name] != p.Port {
			t.Errorf("Service port %s targets %s; container port %s is %d", p.Name, p.TargetPort.String(), p.Name, containerPorts[p.Name])
		}
	}
	for _, p := range want {
		if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, p.Flag+"=:"+itoa(p.Port)) {
			t.Errorf("container args %v do not bind %s to port %d", dep.Spec.Template.Spec.Containers[0].Args, p.Flag, p.Port)
		}
	}
}

// TestChartFlagsExist: every flag the chart can pass is a flag of the
// binary's `tollgate serve` (the rendering with every optional value set
// is checked against `tollgate serve --help`).
func TestChartFlagsExist(t *testing.T) {
	help, err := run(t, nil, buildImageBinary(t), "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	renderings := map[string][]string{
		"redis": {"-f", filepath.Join("testdata", "redis-3-replicas.values.yaml"),
			"--set", "redis.tls=true", "--set", "kubernetes.watchNamespace=shop",
			"--set", "kubernetes.secretLabelSelector=tollgate.dev/jwt-secret=true", "--set", "leaderElection.enabled=false"},
		"redis cluster": {"--set", "quotaStore=redis", "--set", "redis.clusterAddrs={a:6379,b:6379}"},
	}
	for name, args := range renderings {
		var dep appsv1.Deployment
		typed(t, find(t, renderChart(t, args...), "Deployment", release), &dep)
		for _, a := range dep.Spec.Template.Spec.Containers[0].Args[1:] {
			flag, _, _ := strings.Cut(a, "=")
			if !regexp.MustCompile(`(?m)^\s+(-\w, )?` + regexp.QuoteMeta(flag) + `\b`).MatchString(help) {
				t.Errorf("%s: the chart passes %s, which `tollgate serve` does not have", name, a)
			}
		}
	}
}

// TestChartNamespacedRBAC: with kubernetes.watchNamespace, the chart grants
// the ClusterRole's rules as a Role in that namespace only, and passes
// --namespace.
func TestChartNamespacedRBAC(t *testing.T) {
	objs := renderChart(t, "--set", "kubernetes.watchNamespace=shop")
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" {
			t.Errorf("%s/%s rendered for a single watched namespace", o.GetKind(), o.GetName())
		}
	}
	var role rbacv1.Role
	typed(t, find(t, objs, "Role", release), &role)
	if role.Namespace != "shop" {
		t.Errorf("Role in %q, want shop", role.Namespace)
	}
	clusterWide := renderChart(t)
	var cr rbacv1.ClusterRole
	typed(t, find(t, clusterWide, "ClusterRole", release), &cr)
	if got, want := rulesKey(role.Rules), rulesKey(cr.Rules); got != want {
		t.Errorf("namespaced Role rules\n%s\nwant the ClusterRole's\n%s", got, want)
	}
	var rb rbacv1.RoleBinding
	typed(t, find(t, objs, "RoleBinding", release), &rb)
	if rb.Namespace != "shop" || rb.RoleRef.Name != release || rb.Subjects[0].Namespace != namespace {
		t.Errorf("RoleBinding %s/%s binds %v to %v", rb.Namespace, rb.Name, rb.Subjects, rb.RoleRef)
	}
	var dep appsv1.Deployment
	typed(t, find(t, objs, "Deployment", release), &dep)
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--namespace=shop") {
		t.Errorf("args %v: no --namespace=shop", dep.Spec.Template.Spec.Containers[0].Args)
	}
}

// TestChartShutdown: the pod's grace period covers the preStop delay, the
// --shutdown-grace of in-flight checks and 5 s to exit, for any values.
func TestChartShutdown(t *testing.T) {
	for _, tc := range []struct {
		delay, grace string
		wantPeriod   int64
	}{
		{"5", "10", 20},
		{"0", "30", 35},
		{"15", "1", 21},
	} {
		var dep appsv1.Deployment
		typed(t, find(t, renderChart(t, "--set", "shutdown.delaySeconds="+tc.delay, "--set", "shutdown.graceSeconds="+tc.grace),
			"Deployment", release), &dep)
		spec := dep.Spec.Template.Spec
		if got := *spec.TerminationGracePeriodSeconds; got != tc.wantPeriod {
			t.Errorf("delay %s grace %s: terminationGracePeriodSeconds %d, want %d", tc.delay, tc.grace, got, tc.wantPeriod)
		}
		c := spec.Containers[0]
		if !slices.Contains(c.Args, "--shutdown-grace="+tc.grace+"s") {
			t.Errorf("delay %s grace %s: args %v", tc.delay, tc.grace, c.Args)
		}
		var sleep int64
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			sleep = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if itoa(int32(sleep)) != tc.delay {
			t.Errorf("delay %s: preStop sleeps %d s", tc.delay, sleep)
		}
	}
}

// TestChartRedisPassword: the password Secret is mounted read-only and
// passed as a file, never as an argument or environment variable.
func TestChartRedisPassword(t *testing.T) {
	var dep appsv1.Deployment
	typed(t, find(t, renderChart(t, "-f", filepath.Join("testdata", "redis-3-replicas.values.yaml")), "Deployment", release), &dep)
	spec := dep.Spec.Template.Spec
	c := spec.Containers[0]
	var mount *corev1.VolumeMount
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == "redis-password" {
			mount = &c.VolumeMounts[i]
		}
	}
	if mount == nil || !mount.ReadOnly {
		t.Fatalf("no read-only mount of the Redis password: %v", c.VolumeMounts)
	}
	if want := "--redis-password-file=" + mount.MountPath + "/password"; !slices.Contains(c.Args, want) {
		t.Errorf("args %v: want %s", c.Args, want)
	}
	var vol *corev1.Volume
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == "redis-password" {
			vol = &spec.Volumes[i]
		}
	}
	if vol == nil || vol.Secret == nil || vol.Secret.SecretName != "redis-auth" ||
		len(vol.Secret.Items) != 1 || vol.Secret.Items[0].Key != "redis-password" || vol.Secret.Items[0].Path != "password" {
		t.Errorf("Redis password volume %+v: want key redis-password of Secret redis-auth as the file password", vol)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s reads a Secret: the password belongs in a file", e.Name)
		}
	}
}

// rulesKey is a canonical text of RBAC rules, for comparisons.
func rulesKey(rules []rbacv1.PolicyRule) string {
	lines := slices.Sorted(maps.Keys(permissions(rules, "")))
	return strings.Join(lines, "\n")
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }
