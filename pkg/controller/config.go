package controller

import (
	"fmt"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceAccountNamespace is where Kubernetes mounts the pod's namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// InCluster reports whether the process runs in a Kubernetes pod (the
// kubelet sets KUBERNETES_SERVICE_HOST in every container).
func InCluster() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// RESTConfig returns how to reach the API server: the kubeconfig file at
// path when given; otherwise $KUBECONFIG or ~/.kube/config when present;
// otherwise the pod's service account.
func RESTConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// PodNamespace returns the namespace of the pod the process runs in
// (POD_NAMESPACE, else the service account's namespace file), or def
// outside a cluster.
func PodNamespace(def string) string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return def
}
