package packaging_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
)

// TestChartArgsServeAsTheServiceAccount runs the image's binary with the
// container args the chart renders, against the API server the chart was
// installed into, as the chart's ServiceAccount (impersonated): the
// chart's RBAC must be enough for tollgate to sync its caches, take its
// leader-election Lease in the release namespace, become ready and write
// an AuthPolicy's status.
func TestChartArgsServeAsTheServiceAccount(t *testing.T) {
	env, _ := installChart(t)
	bin := buildImageBinary(t)
	ctx := t.Context()

	var dep appsv1.Deployment
	typed(t, find(t, renderChart(t), "Deployment", release), &dep)
	args := append([]string(nil), dep.Spec.Template.Spec.Containers[0].Args...)
	// Outside a pod: free loopback ports, a kubeconfig in place of the
	// mounted token, the pod's namespace from the environment.
	args = append(args,
		"--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--metrics-addr=127.0.0.1:0", "--health-addr=127.0.0.1:0",
		"--log-format=json",
		"--kubeconfig="+env.WriteKubeconfig(t, kubetest.KubeconfigOptions{As: "system:serviceaccount:" + namespace + ":" + release}))

	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), "POD_NAMESPACE="+namespace)
	// Wait copies the logs into the pipe until the process's end; the
	// reader drains it throughout.
	stderr, logw := io.Pipe()
	cmd.Stderr = logw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan map[string]any, 1024)
	go readLogs(stderr, logs)
	t.Cleanup(func() {
		stopGracefully(t, cmd)
		logw.Close()
	})

	var health string
	var seen []string
	deadline := time.After(60 * time.Second)
	for health == "" {
		select {
		case l, ok := <-logs:
			if !ok {
				t.Fatalf("tollgate serve exited before serving; logs:\n%s", strings.Join(seen, "\n"))
			}
			b, _ := json.Marshal(l)
			seen = append(seen, string(b))
			if l["msg"] == "tollgate serving" {
				health, _ = l["health"].(string)
			}
		case <-deadline:
			t.Fatalf("tollgate serve did not start; logs:\n%s", strings.Join(seen, "\n"))
		}
	}
	go func() {
		for range logs {
		}
	}()

	waitFor(t, "/readyz to answer 200", func() error {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})

	var lease coordinationv1.Lease
	waitFor(t, "a leader-election Lease in "+namespace, func() error {
		var leases coordinationv1.LeaseList
		if err := env.Client.List(ctx, &leases, client.InNamespace(namespace)); err != nil {
			return err
		}
		for _, l := range leases.Items {
			if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
				lease = l
				return nil
			}
		}
		return fmt.Errorf("no held Lease among %d", len(leases.Items))
	})
	t.Logf("Lease %s held by %s", lease.Name, *lease.Spec.HolderIdentity)

	shop := env.Namespace(t, "shop")
	ap := &v1alpha1.AuthPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "health"},
		Spec: v1alpha1.AuthPolicySpec{
			PathPrefix: "/health",
			Rules:      []v1alpha1.Rule{{Name: "health", Anonymous: true}},
		},
	}
	if err := env.Client.Create(ctx, ap); err != nil {
		t.Fatal(err)
	}
	// The API server outlives the test (-count=2 runs it again): a policy
	// left behind would conflict with the next one on the same prefix. The
	// test's ctx has ended when Cleanup runs.
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), ap) })
	waitFor(t, "the AuthPolicy's status Ready=True, written by tollgate", func() error {
		got := &v1alpha1.AuthPolicy{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(ap), got); err != nil {
			return err
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status != metav1.ConditionTrue || c.ObservedGeneration != got.Generation {
			return fmt.Errorf("conditions %+v", got.Status.Conditions)
		}
		return nil
	})
}

// stopGracefully stops cmd as the kubelet does (SIGTERM) and fails t
// unless it exits 0 within its shutdown grace; it is killed after that.
func stopGracefully(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("tollgate serve after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Error("tollgate serve did not exit within 30 s of SIGTERM")
	}
}

// readLogs decodes JSON log lines from r into logs, and closes logs at
// the end of r.
func readLogs(r io.Reader, logs chan<- map[string]any) {
	defer close(logs)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			logs <- l
		} else {
			logs <- map[string]any{"raw": sc.Text()}
		}
	}
}
