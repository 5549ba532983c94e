package controller_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policy/policytest"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
)

// TestKubectlOutputIsAPolicyFile: what `kubectl get authpolicies -o yaml`
// (or -o json) writes — a v1 List of the objects, status included — reads
// as a policy file of the same policies, each item a document with its own
// mistakes (docs/troubleshooting.md suggests feeding it to check and
// validate). Needs kubectl next to the envtest binaries
// (hack/envtest-tools.sh kubectl, as make test builds it).
func TestKubectlOutputIsAPolicyFile(t *testing.T) {
	env, ns, _ := scene(t, "kubectl") // a tollgate writes their status
	kubectl := filepath.Join(env.AssetsDir, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Skipf("no %s", kubectl)
	}
	key := jwttest.NewEd25519(t)
	create(t, env.Client, policy(ns, "tasks", "tasks."+ns+".example.test", key, policytest.OwnTasksRule()))
	// "**" only last: the schema admits it, the compiler does not.
	create(t, env.Client, policy(ns, "typo", "typo."+ns+".example.test", key, v1alpha1.Rule{Name: "bad", Path: "/api/**/x"}))
	waitStatus(t, env.Client, ns, "typo", metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec)

	kubeconfig := env.WriteKubeconfig(t, kubetest.KubeconfigOptions{})
	for _, format := range []string{"yaml", "json"} {
		t.Run(format, func(t *testing.T) {
			out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "get", "authpolicies", "-n", ns, "-o", format).Output()
			if err != nil {
				t.Fatalf("kubectl: %v", err)
			}
			t.Logf("kubectl get authpolicies -o %s:\n%s", format, out)
			if !strings.Contains(string(out), "List") {
				t.Fatalf("kubectl wrote no List:\n%s", out)
			}
			docs, err := policyfile.Parse(out)
			if err != nil {
				t.Fatalf("Parse: %v\n%s", err, out)
			}
			var got []string
			for _, d := range docs {
				if d.Err != nil {
					t.Errorf("%s: %v", d.Object(), d.Err)
				}
				got = append(got, d.Object())
			}
			if want := ns + "/tasks," + ns + "/typo"; strings.Join(got, ",") != want {
				t.Fatalf("documents %s, want %s; the file:\n%s", strings.Join(got, ","), want, out)
			}
		})
	}
}
