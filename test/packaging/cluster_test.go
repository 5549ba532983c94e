package packaging_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tollgate-dev/tollgate/internal/deploy"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
)

// kwokNode marks the nodes kwok simulates.
const kwokNode = "kwok.x-k8s.io/node"

// TestHelmInstallWaitRunsPods installs the chart with `helm install --wait`
// into a control plane that schedules and "runs" pods: kube-apiserver,
// kube-controller-manager (Deployments become ReplicaSets become pods; the
// node lifecycle controller lifts the not-ready taint once the node
// reports Ready; EndpointSlices follow ready pods), kube-scheduler (pods
// are bound to a node, with the chart's topology spread) and kwok, which
// simulates a node's kubelet (pods bound to it go Running and Ready
// without containers). Helm returns only once the Deployment has its two
// ready replicas; the Service then has both pods as ready endpoints, at
// the ports every proxy example names.
func TestHelmInstallWaitRunsPods(t *testing.T) {
	bins := map[string]string{}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kwok"} {
		bins[name] = kubetest.Tool(t, name)
	}
	env, err := kubetest.StartWith(kubetest.Options{NoCRDs: true})
	kubetest.Require(t, err)
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	kc := env.Kubeconfig
	startProcess(t, bins["kube-controller-manager"], "--kubeconfig="+kc, "--leader-elect=false", "--secure-port=0",
		"--controllers=deployment-controller,replicaset-controller,disruption-controller,endpointslice-controller,node-lifecycle-controller")
	startProcess(t, bins["kube-scheduler"], "--kubeconfig="+kc, "--leader-elect=false", "--secure-port=0")
	// hack/envtest-tools.sh writes kwok's stages (how simulated nodes and
	// pods change status) next to it.
	startProcess(t, bins["kwok"], "--kubeconfig="+kc, "--config="+filepath.Join(filepath.Dir(bins["kwok"]), "kwok-stages.yaml"),
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokNode+"=fake", "--manage-nodes-with-label-selector=",
		"--cidr=10.0.0.1/24", "--node-ip=10.0.0.1")

	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "kwok-node-0",
			Annotations: map[string]string{kwokNode: "fake"},
			Labels:      map[string]string{"kubernetes.io/hostname": "kwok-node-0", "topology.kubernetes.io/zone": "zone-a"},
		},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110"),
			},
		},
	}
	if err := env.Client.Create(t.Context(), node); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out, err := helm(t, "install", release, chartDir, "--namespace", namespace, "--create-namespace",
		"--kubeconfig", kc, "--wait", "--timeout", "2m")
	if err != nil {
		t.Fatalf("helm install --wait: %v\n%s\n%s", err, out, describe(t, env))
	}
	t.Logf("helm install --wait returned after %s", time.Since(start).Round(time.Second))

	var dep appsv1.Deployment
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: release}, &dep); err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != 2 || dep.Status.AvailableReplicas != 2 {
		t.Errorf("Deployment status %+v, want 2 ready and available replicas", dep.Status)
	}
	var pods corev1.PodList
	if err := env.Client.List(t.Context(), &pods, client.InNamespace(namespace),
		client.MatchingLabels{"app.kubernetes.io/name": "tollgate", "app.kubernetes.io/instance": release}); err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == node.Name {
			running++
		}
		if p.Spec.ServiceAccountName != release {
			t.Errorf("pod %s runs as %q, want the chart's ServiceAccount", p.Name, p.Spec.ServiceAccountName)
		}
	}
	waitFor(t, "the Service's EndpointSlice to list both pods as ready", func() error {
		var slices discoveryv1.EndpointSliceList
		if err := env.Client.List(t.Context(), &slices, client.InNamespace(namespace),
			client.MatchingLabels{discoveryv1.LabelServiceName: deploy.ServiceName}); err != nil {
			return err
		}
		ready, ports := 0, map[string]int32{}
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
			for _, p := range s.Ports {
				ports[*p.Name] = *p.Port
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d ready endpoints in %d slices", ready, len(slices.Items))
		}
		for _, p := range deploy.Ports() {
			if ports[p.Name] != p.Port {
				return fmt.Errorf("endpoint ports %v, want %s:%d", ports, p.Name, p.Port)
			}
		}
		return nil
	})
	if running != 2 {
		var phases []string
		for _, p := range pods.Items {
			phases = append(phases, fmt.Sprintf("%s %s on %q", p.Name, p.Status.Phase, p.Spec.NodeName))
		}
		t.Errorf("running pods: %d, want 2 (%s)", running, strings.Join(phases, "; "))
	}
}

// describe lists the install's ReplicaSets, pods and events, for failures.
func describe(t *testing.T, env *kubetest.Env) string {
	var b strings.Builder
	var rss appsv1.ReplicaSetList
	if err := env.Client.List(t.Context(), &rss, client.InNamespace(namespace)); err == nil {
		for _, rs := range rss.Items {
			fmt.Fprintf(&b, "ReplicaSet %s: %+v\n", rs.Name, rs.Status)
		}
	}
	var pods corev1.PodList
	if err := env.Client.List(t.Context(), &pods, client.InNamespace(namespace)); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&b, "Pod %s on %q: %s %+v\n", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Conditions)
		}
	}
	var events corev1.EventList
	if err := env.Client.List(t.Context(), &events, client.InNamespace(namespace)); err == nil {
		for _, e := range events.Items {
			fmt.Fprintf(&b, "Event %s %s: %s\n", e.InvolvedObject.Name, e.Reason, e.Message)
		}
	}
	return b.String()
}

// startProcess starts bin with args for the rest of the test, its output
// in a file that is printed when the test fails, and stops it (SIGTERM,
// then SIGKILL after 10 s) at the end.
func startProcess(t *testing.T, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(bin)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("last lines of %s:\n%s", filepath.Base(bin), strings.Join(lines[max(0, len(lines)-30):], "\n"))
		}
	})
}
