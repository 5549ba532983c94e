package main

import (
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tollgate-dev/tollgate/pkg/controller"
)

// kubeFlags are the serve flags of the AuthPolicy controller.
type kubeFlags struct {
	enabled                 bool
	kubeconfig              string
	namespace               string
	leaderElect             bool
	leaderElectionNamespace string
	secretLabelSelector     string
}

func (k *kubeFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&k.enabled, "kubernetes", controller.InCluster(), "watch AuthPolicy objects (and the Secrets they reference) in Kubernetes; default true in a cluster (KUBERNETES_SERVICE_HOST set)")
	fl.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file outside a cluster (default $KUBECONFIG, ~/.kube/config, then the pod's service account)")
	fl.StringVar(&k.namespace, "namespace", "", "watch AuthPolicies and Secrets in this namespace only (default all namespaces)")
	fl.BoolVar(&k.leaderElect, "leader-elect", true, "write AuthPolicy status only while holding a Lease (every replica serves decisions either way); false: this process writes status itself")
	fl.StringVar(&k.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader-election Lease (default the pod's namespace in a cluster, \"default\" outside)")
	fl.StringVar(&k.secretLabelSelector, "secret-label-selector", "", "cache only Secrets with these labels (e.g. tollgate.dev/jwt-secret=true); secretRefs can name only those. Default: every Opaque Secret of the watched namespaces")
}

// options returns the controller options, or nil when the controller is
// off. (newLogger routes controller-runtime's and client-go's logs.)
func (k *kubeFlags) options(n flagNames) (*controller.Options, error) {
	if !k.enabled {
		return nil, nil
	}
	sel, err := labels.Parse(k.secretLabelSelector)
	if err != nil {
		return nil, usageError("%s: %w", n.of("secret-label-selector"), err)
	}
	cfg, err := controller.RESTConfig(k.kubeconfig)
	if err != nil {
		return nil, usageError("%s: %w", n.of("kubeconfig"), err)
	}
	ns := k.leaderElectionNamespace
	if ns == "" {
		ns = controller.PodNamespace("default")
	}
	return &controller.Options{
		Config:                  cfg,
		Namespace:               k.namespace,
		SecretSelector:          sel,
		LeaderElect:             k.leaderElect,
		LeaderElectionNamespace: ns,
	}, nil
}
