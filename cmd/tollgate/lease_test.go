package main

import (
	"context"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
)

// TestServeKubernetesLeaderElection: `tollgate serve --kubernetes
// --kubeconfig K` outside a cluster holds its status Lease in the namespace
// default; --leader-election-namespace moves it; with --leader-elect=false
// no Lease is taken and the process writes status itself. In each case an
// AuthPolicy gets its Ready condition and observedGeneration.
func TestServeKubernetesLeaderElection(t *testing.T) {
	env, err := kubetest.Start()
	kubetest.Require(t, err)
	t.Cleanup(func() { _ = env.Stop() })
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("POD_NAMESPACE", "")
	ctx := context.Background()
	elect := env.Namespace(t, "elect")

	unused := env.Namespace(t, "unused")

	for _, tc := range []struct {
		name    string
		args    []string
		leaseNS string // where a held Lease must appear; "": none may appear in unused
	}{
		{name: "default namespace outside a cluster", leaseNS: "default"},
		{name: "--leader-election-namespace", args: []string{"--leader-election-namespace=" + elect}, leaseNS: elect},
		{name: "--leader-elect=false", args: []string{"--leader-elect=false", "--leader-election-namespace=" + unused}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t, "le")
			args := append([]string{"--kubernetes", "--kubeconfig", env.Kubeconfig, "--namespace", ns}, tc.args...)
			p := startServe(t, 0, args...)
			ap := &v1alpha1.AuthPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
				Spec: v1alpha1.AuthPolicySpec{
					Hosts: []string{ns + ".example.test"},
					Rules: []v1alpha1.Rule{{Name: "open", Path: "/**", Anonymous: true}},
				},
			}
			if err := env.Client.Create(ctx, ap); err != nil {
				t.Fatal(err)
			}
			p.waitFor("Ready=True Accepted for the current generation", func() bool {
				var got v1alpha1.AuthPolicy
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ap), &got); err != nil {
					t.Fatal(err)
				}
				c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
				return got.Status.ObservedGeneration == got.Generation && c != nil &&
					c.Status == metav1.ConditionTrue && c.Reason == v1alpha1.ReasonAccepted
			})
			held := func(in string) []string {
				var leases coordinationv1.LeaseList
				if err := env.Client.List(ctx, &leases, client.InNamespace(in)); err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, l := range leases.Items {
					if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
						names = append(names, l.Name)
					}
				}
				return names
			}
			if tc.leaseNS == "" {
				if got := held(unused); len(got) != 0 {
					t.Errorf("--leader-elect=false took Leases %v in %s", got, unused)
				}
				return
			}
			// Status was written, so the Lease is held by now.
			if got := held(tc.leaseNS); len(got) != 1 {
				t.Errorf("Leases held in %s: %v, want one", tc.leaseNS, got)
			}
		})
	}
}
