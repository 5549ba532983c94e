package controller_test

import (
	"net/http"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestOnlyTheLeaderWritesStatus: two tollgate processes on one API server
// both enforce every policy; only the one holding the Lease writes status;
// when it is killed (SIGKILL: the Lease is not released) the other takes
// over status writing once the Lease expires.
func TestOnlyTheLeaderWritesStatus(t *testing.T) {
	env := kube(t)
	ns := env.Namespace(t, "leader")
	cleanup(t, env.Client, ns)
	host := ns + ".example.test"
	key := jwttest.NewEd25519(t)
	kubeconfig := asTollgate(t, env)
	lease := shortLease(ns)

	first := startChild(t, kubeconfig, lease)
	eventually(t, 30*time.Second, "the first tollgate leads", first.leading)
	second := start(t, kubeconfig, lease)
	if second.leading() {
		t.Fatal("both tollgates lead")
	}

	create(t, env.Client, policy(ns, "tasks", host, key, policytest.AnonymousRule("public", "/api/v1")))
	for _, in := range []*instance{first, second} {
		in.expect(enforcedWithin, host, "/api/v1", "", http.StatusOK)
	}
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	edit(t, env.Client, ns, "tasks", func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules[0].Path = "/api/v2" })
	for _, in := range []*instance{first, second} {
		in.expect(enforcedWithin, host, "/api/v2", "", http.StatusOK)
	}
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	if first.statusWrites() < 2 {
		t.Errorf("the leader wrote status %v times, want at least 2 (two generations)", first.statusWrites())
	}
	if n := second.statusWrites(); n != 0 {
		t.Errorf("the follower wrote status %v times, want 0", n)
	}

	first.stop() // SIGKILL
	killed := time.Now()
	// The follower may take the Lease once it has seen no renewal for the
	// lease duration, checking every retry period.
	eventually(t, lease.Lease+2*lease.Retry+time.Second, "the second tollgate leads", second.leading)
	t.Logf("took over %v after the kill (lease %v, retry %v)", time.Since(killed).Round(time.Millisecond), lease.Lease, lease.Retry)

	edit(t, env.Client, ns, "tasks", func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules[0].Path = "/api/v3" })
	second.expect(enforcedWithin, host, "/api/v3", "", http.StatusOK)
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	if second.statusWrites() < 1 {
		t.Errorf("the new leader wrote no status")
	}
}
