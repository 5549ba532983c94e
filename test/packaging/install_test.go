package packaging_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/deploy"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
)

// helmEnv is the control plane the chart is installed into. It starts
// without tollgate's CRD, so that the chart's crds/ must create it.
var helmEnv = kubetest.Shared{Options: kubetest.Options{NoCRDs: true}}

func TestMain(m *testing.M) {
	code := m.Run()
	helmEnv.Stop()
	os.Exit(code)
}

// The chart is installed once per test binary, by the first test that
// needs it.
var helmInstall struct {
	once sync.Once
	out  string // helm install's output (NOTES included)
	err  error
}

const crdName = "authpolicies.tollgate.dev"

var crdGVK = schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"}

// installChart runs `helm install tollgate charts/tollgate -n
// tollgate-system --create-namespace` against a fresh control plane (no
// CRD yet), once, and returns the control plane and helm's output.
func installChart(t *testing.T) (*kubetest.Env, string) {
	t.Helper()
	env := helmEnv.Get(t)
	helmInstall.once.Do(func() {
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(crdGVK)
		if err := env.Client.Get(t.Context(), client.ObjectKey{Name: crdName}, crd); !apierrors.IsNotFound(err) {
			helmInstall.err = fmt.Errorf("before helm install, get CRD %s: %v (want NotFound)", crdName, err)
			return
		}
		helmInstall.out, helmInstall.err = helm(t, "install", release, chartDir,
			"--namespace", namespace, "--create-namespace", "--kubeconfig", env.Kubeconfig)
	})
	if helmInstall.err != nil {
		t.Fatalf("helm install: %v", helmInstall.err)
	}
	return env, helmInstall.out
}

// TestHelmInstall: `helm install` into a real kube-apiserver creates the
// CRD (which then serves AuthPolicies), the Deployment as rendered (the
// API server keeps every field, the preStop sleep included), the Service,
// the ServiceAccount, the RBAC objects and the PodDisruptionBudget.
func TestHelmInstall(t *testing.T) {
	env, _ := installChart(t)
	ctx := t.Context()
	c := env.Client

	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(crdGVK)
	waitFor(t, "the AuthPolicy CRD to be established", func() error {
		if err := c.Get(ctx, client.ObjectKey{Name: crdName}, crd); err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return nil
			}
		}
		return fmt.Errorf("not established: %v", conds)
	})
	// The REST mapper caches discovery; a fresh client sees the new type.
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	shop := env.Namespace(t, "shop")
	ap := samplePolicy(t, shop)
	waitFor(t, "an AuthPolicy to be created", func() error { return c.Create(ctx, ap) })

	rendered := renderChart(t)
	key := client.ObjectKey{Namespace: namespace, Name: release}
	var dep appsv1.Deployment
	if err := c.Get(ctx, key, &dep); err != nil {
		t.Fatalf("Deployment: %v", err)
	}
	var want appsv1.Deployment
	typed(t, find(t, rendered, "Deployment", release), &want)
	if *dep.Spec.Replicas != 2 {
		t.Errorf("Deployment replicas %d, want 2", *dep.Spec.Replicas)
	}
	got, wantC := dep.Spec.Template.Spec.Containers[0], want.Spec.Template.Spec.Containers[0]
	if strings.Join(got.Args, " ") != strings.Join(wantC.Args, " ") {
		t.Errorf("stored args %v, rendered %v", got.Args, wantC.Args)
	}
	if got.Lifecycle == nil || got.Lifecycle.PreStop == nil || got.Lifecycle.PreStop.Sleep == nil || got.Lifecycle.PreStop.Sleep.Seconds != 5 {
		t.Errorf("stored preStop %+v: the API server dropped the sleep action", got.Lifecycle)
	}
	if sc := got.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation {
		t.Errorf("stored container securityContext %+v", sc)
	}

	var svc corev1.Service
	if err := c.Get(ctx, client.ObjectKey{Namespace: deploy.Namespace, Name: deploy.ServiceName}, &svc); err != nil {
		t.Fatalf("Service: %v", err)
	}
	for i, p := range deploy.Ports() {
		if i >= len(svc.Spec.Ports) || svc.Spec.Ports[i].Name != p.Name || svc.Spec.Ports[i].Port != p.Port {
			t.Errorf("Service ports %v, want %v", svc.Spec.Ports, deploy.Ports())
			break
		}
	}
	for _, obj := range []client.Object{
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: release}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: release}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release + "-leader-election"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release + "-leader-election"}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: release}},
	} {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Errorf("%T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
		}
	}
}

// TestHelmInstallRejectsBadValues: `helm install` refuses a value of the
// wrong type before creating anything, naming the value.
func TestHelmInstallRejectsBadValues(t *testing.T) {
	env, _ := installChart(t)
	ns := env.Namespace(t, "bad-values")
	out, err := helm(t, "install", "bad", chartDir, "--namespace", ns, "--kubeconfig", env.Kubeconfig, "--set-string", "replicas=many")
	if err == nil {
		t.Fatalf("helm install with replicas=many succeeded:\n%s", out)
	}
	if !strings.Contains(err.Error(), "at '/replicas': got string, want integer") {
		t.Errorf("helm install with replicas=many: the error does not name the value:\n%v", err)
	}
	var deps appsv1.DeploymentList
	if err := env.Client.List(t.Context(), &deps, client.InNamespace(ns)); err != nil || len(deps.Items) != 0 {
		t.Errorf("after the refused install, Deployments in %s: %d (%v)", ns, len(deps.Items), err)
	}
}

// samplePolicy returns config/samples' AuthPolicy in namespace ns.
func samplePolicy(t *testing.T, ns string) *v1alpha1.AuthPolicy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "config", "samples", "tollgate_v1alpha1_authpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ap v1alpha1.AuthPolicy
	if err := yaml.UnmarshalStrict(b, &ap); err != nil {
		t.Fatalf("sample AuthPolicy: %v", err)
	}
	ap.Namespace = ns
	return &ap
}

// TestHelmInstallNotes: the notes `helm install` prints hold an Istio
// extension provider and an Envoy ext_authz filter and cluster that parse
// strictly into Istio's and Envoy's own types and name the installed
// Service at its grpc port.
func TestHelmInstallNotes(t *testing.T) {
	_, out := installChart(t)
	_, notes, ok := strings.Cut(out, "\nNOTES:\n")
	if !ok {
		t.Fatalf("helm install printed no NOTES:\n%s", out)
	}
	grpcPort, _ := deploy.PortNamed(deploy.PortGRPC)

	t.Run("Istio", func(t *testing.T) {
		var mesh meshv1alpha1.MeshConfig
		unmarshalProto(t, snippet(t, notes, "  extensionProviders:"), &mesh)
		ps := mesh.GetExtensionProviders()
		if len(ps) != 1 || ps[0].GetEnvoyExtAuthzGrpc() == nil {
			t.Fatalf("extension providers %v, want one envoyExtAuthzGrpc", ps)
		}
		g := ps[0].GetEnvoyExtAuthzGrpc()
		if g.GetService() != deploy.ServiceHost || g.GetPort() != uint32(grpcPort.Port) || g.GetFailOpen() || g.GetStatusOnError() != "503" {
			t.Errorf("provider %v: want %s:%d, failOpen false, statusOnError 503", g, deploy.ServiceHost, grpcPort.Port)
		}
	})

	t.Run("Envoy", func(t *testing.T) {
		var s struct {
			HTTPFilters []json.RawMessage `json:"http_filters"`
			Clusters    []json.RawMessage `json:"clusters"`
		}
		if err := yaml.UnmarshalStrict(snippet(t, notes, "  http_filters:"), &s); err != nil {
			t.Fatalf("Envoy snippet: %v", err)
		}
		if len(s.HTTPFilters) != 1 || len(s.Clusters) != 1 {
			t.Fatalf("Envoy snippet: %d filters, %d clusters; want one of each", len(s.HTTPFilters), len(s.Clusters))
		}
		var f hcmv3.HttpFilter
		unmarshalProto(t, s.HTTPFilters[0], &f)
		var authz extauthzv3.ExtAuthz
		if err := f.GetTypedConfig().UnmarshalTo(&authz); err != nil {
			t.Fatalf("filter %s: %v", f.GetName(), err)
		}
		var cl clusterv3.Cluster
		unmarshalProto(t, s.Clusters[0], &cl)
		for _, m := range []interface{ ValidateAll() error }{&f, &authz, &cl} {
			if err := m.ValidateAll(); err != nil {
				t.Errorf("%T: %v", m, err)
			}
		}
		if authz.GetFailureModeAllow() || authz.GetStatusOnError().GetCode() != 503 {
			t.Errorf("ext_authz: failure_mode_allow %v, status_on_error %v; want false, 503", authz.GetFailureModeAllow(), authz.GetStatusOnError())
		}
		if name := authz.GetGrpcService().GetEnvoyGrpc().GetClusterName(); name != cl.GetName() {
			t.Errorf("ext_authz calls cluster %q; the snippet's cluster is %q", name, cl.GetName())
		}
		eps := cl.GetLoadAssignment().GetEndpoints()
		if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
			t.Fatalf("cluster endpoints %v", eps)
		}
		a := eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if a.GetAddress() != deploy.ServiceHost || a.GetPortValue() != uint32(grpcPort.Port) {
			t.Errorf("cluster address %s:%d, want %s:%d", a.GetAddress(), a.GetPortValue(), deploy.ServiceHost, grpcPort.Port)
		}
	})
}

// snippet returns the YAML block of notes that starts at the line first,
// up to the next blank line, with its two-space indent removed.
func snippet(t *testing.T, notes, first string) []byte {
	t.Helper()
	i := strings.Index(notes, "\n"+first+"\n")
	if i < 0 {
		t.Fatalf("NOTES have no line %q:\n%s", first, notes)
	}
	block, _, _ := strings.Cut(notes[i+1:], "\n\n")
	var b strings.Builder
	for _, l := range strings.Split(block, "\n") {
		b.WriteString(strings.TrimPrefix(l, "  "))
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// unmarshalProto reads YAML or JSON strictly (no unknown fields) into m.
func unmarshalProto(t *testing.T, y []byte, m proto.Message) {
	t.Helper()
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%T: %v", m, err)
	}
	if err := protojson.Unmarshal(j, m); err != nil {
		t.Fatalf("%T: %v\n%s", m, err, y)
	}
}

// TestKustomizeServerDryRun: `kubectl apply --dry-run=server -k
// config/default` against a fresh API server is accepted: every object is
// admitted and validated (strict field validation) and none is stored.
func TestKustomizeServerDryRun(t *testing.T) {
	env, err := kubetest.StartWith(kubetest.Options{NoCRDs: true})
	kubetest.Require(t, err)
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	// A dry run stores nothing, so namespaced objects would be refused
	// for a namespace that does not exist yet; it is the one object
	// created for real.
	if err := env.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	out, err := kubectl(t, "apply", "--dry-run=server", "--validate=strict", "-k", filepath.Join(repoRoot, "config", "default"),
		"--kubeconfig", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// kubectl prints "<kind>[.<group>]/<name> created (server dry run)"
	// for each object (the core group has no suffix).
	reported := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		ref, result, _ := strings.Cut(line, " ")
		if result != "created (server dry run)" && ref != "namespace/"+namespace {
			t.Errorf("kubectl apply: %q, want created (server dry run)", line)
		}
		reported[ref] = true
	}
	objs := renderKustomize(t)
	for _, o := range objs {
		ref := strings.ToLower(o.GetKind())
		if g := o.GroupVersionKind().Group; g != "" {
			ref += "." + g
		}
		ref += "/" + o.GetName()
		if !reported[ref] {
			t.Errorf("kubectl apply did not report %s:\n%s", ref, out)
		}
	}
	if len(reported) != len(objs) {
		t.Errorf("kubectl apply reported %d objects, config/default renders %d:\n%s", len(reported), len(objs), out)
	}
	var dep appsv1.Deployment
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: release}, &dep); !apierrors.IsNotFound(err) {
		t.Errorf("after a dry run, get Deployment: %v (want NotFound)", err)
	}
}

// TestChartServiceAccountPermissions asks the API server what the chart's
// ServiceAccount may do (SubjectAccessReview), then makes real requests as
// that ServiceAccount (impersonation): it may read AuthPolicies and
// Secrets everywhere, write AuthPolicy status and Events, and hold its
// Lease in its own namespace; nothing else.
func TestChartServiceAccountPermissions(t *testing.T) {
	env, _ := installChart(t)
	ctx := t.Context()
	user := "system:serviceaccount:" + namespace + ":" + release
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	shop := env.Namespace(t, "shop")

	type access struct{ verb, group, resource, subresource, namespace string }
	allowed := func(a access) (bool, string) {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace,
			},
		}}
		if err := env.Client.Create(ctx, sar); err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		return sar.Status.Allowed, sar.Status.Reason
	}
	// RBAC reaches the authorizer through its informers: wait for the
	// chart's bindings to be seen.
	waitFor(t, "the chart's RBAC to take effect", func() error {
		if ok, _ := allowed(access{"list", "tollgate.dev", "authpolicies", "", ""}); !ok {
			return fmt.Errorf("list authpolicies not yet allowed")
		}
		return nil
	})

	for name, tc := range map[string]struct {
		access access
		want   bool
	}{
		"list AuthPolicies in every namespace":     {access{"list", "tollgate.dev", "authpolicies", "", ""}, true},
		"watch AuthPolicies in every namespace":    {access{"watch", "tollgate.dev", "authpolicies", "", ""}, true},
		"get an AuthPolicy":                        {access{"get", "tollgate.dev", "authpolicies", "", shop}, true},
		"list Secrets in every namespace":          {access{"list", "", "secrets", "", ""}, true},
		"watch Secrets in every namespace":         {access{"watch", "", "secrets", "", ""}, true},
		"get a Secret":                             {access{"get", "", "secrets", "", shop}, true},
		"update AuthPolicy status":                 {access{"update", "tollgate.dev", "authpolicies", "status", shop}, true},
		"patch AuthPolicy status":                  {access{"patch", "tollgate.dev", "authpolicies", "status", shop}, true},
		"create Events":                            {access{"create", "events.k8s.io", "events", "", shop}, true},
		"create its Lease":                         {access{"create", "coordination.k8s.io", "leases", "", namespace}, true},
		"update its Lease":                         {access{"update", "coordination.k8s.io", "leases", "", namespace}, true},
		"update an AuthPolicy's spec":              {access{"update", "tollgate.dev", "authpolicies", "", shop}, false},
		"patch an AuthPolicy's spec":               {access{"patch", "tollgate.dev", "authpolicies", "", shop}, false},
		"create an AuthPolicy":                     {access{"create", "tollgate.dev", "authpolicies", "", shop}, false},
		"delete an AuthPolicy":                     {access{"delete", "tollgate.dev", "authpolicies", "", shop}, false},
		"update a Secret":                          {access{"update", "", "secrets", "", shop}, false},
		"create a Secret":                          {access{"create", "", "secrets", "", namespace}, false},
		"delete a pod":                             {access{"delete", "", "pods", "", shop}, false},
		"list ConfigMaps":                          {access{"list", "", "configmaps", "", ""}, false},
		"create a Lease in another namespace":      {access{"create", "coordination.k8s.io", "leases", "", shop}, false},
		"delete its Lease":                         {access{"delete", "coordination.k8s.io", "leases", "", namespace}, false},
		"create a ClusterRoleBinding (escalation)": {access{"create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""}, false},
		"update its own Deployment":                {access{"update", "apps", "deployments", "", namespace}, false},
		"create pods":                              {access{"create", "", "pods", "", namespace}, false},
	} {
		t.Run("SubjectAccessReview: "+name, func(t *testing.T) {
			if got, reason := allowed(tc.access); got != tc.want {
				t.Errorf("%+v: allowed %v, want %v (%s)", tc.access, got, tc.want, reason)
			}
		})
	}

	// Real requests as the ServiceAccount.
	admin := env.Client
	ap := samplePolicy(t, shop)
	waitFor(t, "an AuthPolicy to be created", func() error { return admin.Create(ctx, ap) })
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	sa, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("as the ServiceAccount: list and watch AuthPolicies and Secrets everywhere", func(t *testing.T) {
		var aps v1alpha1.AuthPolicyList
		if err := sa.List(ctx, &aps); err != nil {
			t.Fatalf("list AuthPolicies: %v", err)
		}
		if len(aps.Items) == 0 {
			t.Error("list AuthPolicies: none, want the one just created")
		}
		var secrets corev1.SecretList
		if err := sa.List(ctx, &secrets); err != nil {
			t.Errorf("list Secrets: %v", err)
		}
		for _, list := range []client.ObjectList{&v1alpha1.AuthPolicyList{}, &corev1.SecretList{}} {
			w, err := sa.Watch(ctx, list)
			if err != nil {
				t.Errorf("watch %T: %v", list, err)
				continue
			}
			w.Stop()
		}
	})
	t.Run("as the ServiceAccount: update AuthPolicy status", func(t *testing.T) {
		got := &v1alpha1.AuthPolicy{}
		if err := sa.Get(ctx, client.ObjectKeyFromObject(ap), got); err != nil {
			t.Fatal(err)
		}
		meta.SetStatusCondition(&got.Status.Conditions, metav1.Condition{
			Type: "Ready", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "test", ObservedGeneration: got.Generation,
		})
		if err := sa.Status().Update(ctx, got); err != nil {
			t.Errorf("update status: %v", err)
		}
	})
	t.Run("as the ServiceAccount: refused", func(t *testing.T) {
		got := &v1alpha1.AuthPolicy{}
		if err := sa.Get(ctx, client.ObjectKeyFromObject(ap), got); err != nil {
			t.Fatal(err)
		}
		got.Spec.PathPrefix = "/other"
		for what, err := range map[string]error{
			"update an AuthPolicy's spec": sa.Update(ctx, got),
			"delete an AuthPolicy":        sa.Delete(ctx, got),
			"delete a pod":                sa.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "any"}}),
			"create a Secret": sa.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "stolen"},
				StringData: map[string]string{"k": "v"}}),
			"list ConfigMaps": sa.List(ctx, &corev1.ConfigMapList{}),
		} {
			if !apierrors.IsForbidden(err) {
				t.Errorf("%s: %v, want Forbidden", what, err)
			}
		}
	})
}

// waitFor polls f until it returns nil, failing t after a deadline.
func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
