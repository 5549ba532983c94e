package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/server"
)

// TestPolicySourceInReadyz checks that a server with nothing to load
// policies from warns at start and says so in /readyz, which stays ready:
// there is nothing to wait for.
func TestPolicySourceInReadyz(t *testing.T) {
	tests := map[string]struct {
		files       map[string]string
		noPaths     bool
		wantSource  string
		wantWarning bool
	}{
		"policy files":        {files: map[string]string{"public.yaml": otherPolicy}, wantSource: "files"},
		"an empty policy dir": {wantSource: "files"},
		"no policy source":    {noPaths: true, wantSource: "none", wantWarning: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := start(t, tc.files, func(o *server.Options) {
				if tc.noPaths {
					o.PolicyPaths = nil
				}
			})
			code, body := get(t, h.srv.Addr("health"), "/readyz")
			var got struct {
				Ready        bool   `json:"ready"`
				PolicySource string `json:"policySource"`
				Warning      string `json:"warning"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("/readyz body %q: %v", body, err)
			}
			if code != 200 || !got.Ready || got.PolicySource != tc.wantSource {
				t.Errorf("/readyz = %d %s; want 200, ready, policySource %q", code, body, tc.wantSource)
			}
			logged := strings.Contains(h.logs.String(), "no policy source")
			if tc.wantWarning {
				if !strings.Contains(got.Warning, "--policy-dir") || !logged {
					t.Errorf("no warning naming --policy-dir: /readyz %s; logs:\n%s", body, h.logs.String())
				}
			} else if got.Warning != "" || logged {
				t.Errorf("a warning with a policy source: /readyz %s; logs:\n%s", body, h.logs.String())
			}
		})
	}
}

// TestSecretRefWithoutSecretsDir checks that a secretRef policy on a
// server with no secret source is not ready, and that its status says
// which flag supplies secrets.
func TestSecretRefWithoutSecretsDir(t *testing.T) {
	policy := `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: hs
  namespace: shop
spec:
  jwt:
    issuer: https://issuer.test
    secretRef: {name: auth, key: jwt-secret}
  rules:
    - name: everything
`
	h := start(t, map[string]string{"hs.yaml": policy})
	h.waitFor("the policy's status", func() bool { return strings.Contains(h.logs.String(), `"policy":"shop/hs"`) })
	logs := h.logs.String()
	if !strings.Contains(logs, "SecretNotFound") || !strings.Contains(logs, "--secrets-dir DIR, where the file DIR/shop/auth/jwt-secret holds the secret") {
		t.Errorf("the status does not name --secrets-dir:\n%s", logs)
	}
}
