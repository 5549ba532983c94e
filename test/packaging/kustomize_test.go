package packaging_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tollgate-dev/tollgate/internal/deploy"
)

// kustomize is rendered with the real `kubectl kustomize` (kubectl built by
// hack/envtest-tools.sh, as helm is) rather than sigs.k8s.io/kustomize/api
// in the test: it is the tool users run, the envtest suite needs kubectl
// anyway for `kubectl apply --dry-run=server -k`, and it keeps kustomize's
// module graph (kyaml, go-openapi, ...) out of go.mod.

// TestKustomizeRendersCompleteInstall: config/default renders every
// object of an install, in tollgate-system.
func TestKustomizeRendersCompleteInstall(t *testing.T) {
	objs := renderKustomize(t)
	for _, want := range []struct{ kind, name string }{
		{"Namespace", namespace},
		{"CustomResourceDefinition", "authpolicies.tollgate.dev"},
		{"ServiceAccount", release},
		{"ClusterRole", release},
		{"ClusterRoleBinding", release},
		{"Role", release},
		{"RoleBinding", release},
		{"Deployment", release},
		{"Service", deploy.ServiceName},
		{"PodDisruptionBudget", release},
	} {
		o := find(t, objs, want.kind, want.name)
		if o.GetKind() != "Namespace" && o.GetKind() != "CustomResourceDefinition" &&
			!strings.HasPrefix(o.GetKind(), "Cluster") && o.GetNamespace() != namespace {
			t.Errorf("%s/%s in namespace %q, want %s", o.GetKind(), o.GetName(), o.GetNamespace(), namespace)
		}
	}
}

// TestChartMatchesKustomize: with its default values, the chart installs
// what config/default does: RBAC with the same effect (the same
// permissions, cluster-wide or in the release namespace, for the same
// ServiceAccount), and the same pod (container args, image, ports, probes,
// security context, resources, shutdown and spreading), Service and
// PodDisruptionBudget.
func TestChartMatchesKustomize(t *testing.T) {
	chart, kust := renderChart(t), renderKustomize(t)

	t.Run("RBAC", func(t *testing.T) {
		c, k := effectivePermissions(t, chart), effectivePermissions(t, kust)
		if len(k) == 0 {
			t.Fatal("config/default grants nothing to the tollgate ServiceAccount")
		}
		for p := range c {
			if !k[p] {
				t.Errorf("the chart grants %s; config/default does not", p)
			}
		}
		for p := range k {
			if !c[p] {
				t.Errorf("config/default grants %s; the chart does not", p)
			}
		}
	})

	for _, tc := range []struct {
		kind, path string
	}{
		{"Deployment", "spec.template.spec.containers"},
		{"Deployment", "spec.template.spec"},
		{"Deployment", "spec.template.metadata"},
		{"Deployment", "spec.replicas"},
		{"Service", "spec"},
		{"PodDisruptionBudget", "spec"},
	} {
		t.Run(tc.kind+" "+tc.path, func(t *testing.T) {
			c := field(t, find(t, chart, tc.kind, release), tc.path)
			k := field(t, find(t, kust, tc.kind, release), tc.path)
			if c != k {
				t.Errorf("%s %s differs (- config/default, + chart):\n%s", tc.kind, tc.path, lineDiff(k, c))
			}
		})
	}
}

// field returns the JSON of the field at a dotted path of o.
func field(t *testing.T, o *unstructured.Unstructured, path string) string {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, strings.Split(path, ".")...)
	if err != nil || !ok {
		t.Fatalf("%s/%s has no %s (%v)", o.GetKind(), o.GetName(), path, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// effectivePermissions returns what the objects grant the tollgate
// ServiceAccount (tollgate-system/tollgate), one "scope group/resource verb"
// per permission, scope being "cluster" or the namespace. A namespaced
// permission that is also granted cluster-wide is left out: it changes
// nothing.
func effectivePermissions(t *testing.T, objs []*unstructured.Unstructured) map[string]bool {
	t.Helper()
	roles := map[string][]rbacv1.PolicyRule{} // "Kind namespace/name" -> rules
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			typed(t, o, &r)
			roles["ClusterRole /"+r.Name] = r.Rules
		case "Role":
			var r rbacv1.Role
			typed(t, o, &r)
			roles["Role "+r.Namespace+"/"+r.Name] = r.Rules
		}
	}
	perms := map[string]bool{}
	for _, o := range objs {
		var subjects []rbacv1.Subject
		var ref rbacv1.RoleRef
		var ns string
		switch o.GetKind() {
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			typed(t, o, &b)
			subjects, ref = b.Subjects, b.RoleRef
		case "RoleBinding":
			var b rbacv1.RoleBinding
			typed(t, o, &b)
			subjects, ref, ns = b.Subjects, b.RoleRef, b.Namespace
		default:
			continue
		}
		if !slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == release && s.Namespace == namespace
		}) {
			continue
		}
		key := ref.Kind + " " + ns + "/" + ref.Name
		if ref.Kind == "ClusterRole" {
			key = "ClusterRole /" + ref.Name
		}
		rules, ok := roles[key]
		if !ok {
			t.Errorf("%s/%s binds %s, which is not rendered", o.GetKind(), o.GetName(), key)
		}
		scope := ns // a ClusterRole bound by a RoleBinding grants in ns only
		if o.GetKind() == "ClusterRoleBinding" {
			scope = "cluster"
		}
		maps.Copy(perms, permissions(rules, scope))
	}
	for p := range perms {
		scope, rest, _ := strings.Cut(p, " ")
		if scope != "cluster" && perms["cluster "+rest] {
			delete(perms, p)
		}
	}
	return perms
}

// permissions expands rules into "scope group/resource verb" strings
// (without the scope and its space when scope is empty).
func permissions(rules []rbacv1.PolicyRule, scope string) map[string]bool {
	perms := map[string]bool{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					p := fmt.Sprintf("%s/%s %s", g, res, v)
					if scope != "" {
						p = scope + " " + p
					}
					perms[p] = true
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			perms[strings.TrimSpace(scope+" url "+u)] = true
		}
	}
	return perms
}
