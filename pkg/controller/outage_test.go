package controller_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestAPIServerOutage: tollgate is not ready until its caches have synced
// from the API server; once it has served them, an unreachable API server
// changes nothing for decisions or readiness; and changes made meanwhile
// apply once it is back.
func TestAPIServerOutage(t *testing.T) {
	env := kube(t)
	ns := env.Namespace(t, "outage")
	cleanup(t, env.Client, ns)
	host := ns + ".example.test"
	key := jwttest.NewEd25519(t)
	create(t, env.Client, policy(ns, "tasks", host, key, policytest.AnonymousRule("public", "/api/v1")))

	u, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host, false)
	kubeconfig := env.WriteKubeconfig(t, kubetest.KubeconfigOptions{As: serviceAccount, Server: "https://" + proxy.addr()})
	in := startUnready(t, kubeconfig, shortLease(ns))

	// Unreachable from the start: tried, and not ready.
	eventually(t, 30*time.Second, "tollgate tries the API server", func() bool { return proxy.refused() >= 3 })
	if got := in.readyz(); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the caches synced: %d, want 503", got)
	}
	if got := in.grpcHealth(); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health before the caches synced: %v, want NOT_SERVING", got)
	}

	proxy.setOpen(true)
	in.waitReady()
	in.expect(enforcedWithin, host, "/api/v1", "", http.StatusOK)
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	eventually(t, 30*time.Second, "tollgate leads", in.leading)

	// The API server goes away: tollgate notices (it keeps retrying), keeps
	// deciding with what it has, and stays ready.
	proxy.setOpen(false)
	edit(t, env.Client, ns, "tasks", func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules[0].Path = "/api/v2" })
	eventually(t, 30*time.Second, "tollgate tries the API server again", func() bool { return proxy.refused() >= 3 })
	eventually(t, 30*time.Second, "tollgate gives up the Lease it cannot renew", func() bool { return !in.leading() })
	if got := in.check(host, "GET", "/api/v1", ""); got != http.StatusOK {
		t.Errorf("during the outage: /api/v1 %d, want 200 (last synced policy)", got)
	}
	if got := in.readyz(); got != http.StatusOK {
		t.Errorf("/readyz during the outage: %d, want 200", got)
	}
	if got := in.grpcHealth(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health during the outage: %v, want SERVING", got)
	}

	// Back: the edit made meanwhile applies, and status writing resumes.
	proxy.setOpen(true)
	in.expect(30*time.Second, host, "/api/v2", "", http.StatusOK)
	eventually(t, 30*time.Second, "tollgate leads again", in.leading)
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

func (in *instance) grpcHealth() healthpb.HealthCheckResponse_ServingStatus {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(in.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		in.t.Fatalf("gRPC health: %v", err)
	}
	return resp.GetStatus()
}

// TestRBACIsMinimal pins config/rbac/role.yaml (generated from the
// kubebuilder markers of this package) to what tollgate needs, which the
// other tests of this package prove is enough by running as that role:
// read AuthPolicies and Secrets, write AuthPolicy status and Events, and
// hold a Lease in its own namespace.
func TestRBACIsMinimal(t *testing.T) {
	root, err := kubetest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, doc := range strings.Split(string(data), "\n---") {
		var role struct {
			Kind     string
			Metadata metav1.ObjectMeta
			Rules    []rbacv1.PolicyRule
		}
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil {
			t.Fatal(err)
		}
		for _, r := range role.Rules {
			if len(r.ResourceNames) > 0 || len(r.NonResourceURLs) > 0 {
				t.Errorf("%s %s: unexpected rule %v", role.Kind, role.Metadata.Name, r)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						got = append(got, role.Kind+" "+g+"/"+res+" "+v)
					}
				}
			}
		}
	}
	slices.Sort(got)
	want := []string{
		"ClusterRole /secrets get", "ClusterRole /secrets list", "ClusterRole /secrets watch",
		"ClusterRole events.k8s.io/events create", "ClusterRole events.k8s.io/events patch",
		"ClusterRole tollgate.dev/authpolicies get", "ClusterRole tollgate.dev/authpolicies list", "ClusterRole tollgate.dev/authpolicies watch",
		"ClusterRole tollgate.dev/authpolicies/status patch", "ClusterRole tollgate.dev/authpolicies/status update",
		"Role coordination.k8s.io/leases create", "Role coordination.k8s.io/leases get", "Role coordination.k8s.io/leases update",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("config/rbac/role.yaml grants\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
