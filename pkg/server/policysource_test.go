package server_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
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

// hsPolicy needs a token signed with the secret shop/auth/jwt-secret.
const hsPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: hs
  namespace: shop
spec:
  jwt:
    issuer: ` + issuer + `
    secretRef: {name: auth, key: jwt-secret}
  rules:
    - name: everything
`

// TestSecretRefWithoutSecretsDir checks that a secretRef policy on a
// server with no secret source is not ready, and that its status says
// which flag supplies secrets.
func TestSecretRefWithoutSecretsDir(t *testing.T) {
	h := start(t, map[string]string{"hs.yaml": hsPolicy})
	h.waitFor("the policy's status", func() bool { return strings.Contains(h.logs.String(), `"policy":"shop/hs"`) })
	logs := h.logs.String()
	if !strings.Contains(logs, "SecretNotFound") || !strings.Contains(logs, "--secrets-dir DIR, where the file DIR/shop/auth/jwt-secret holds the secret") {
		t.Errorf("the status does not name --secrets-dir:\n%s", logs)
	}
}

// TestSecretFileRemovedIsRevoked: with --secrets-dir, removing the file of
// a policy's secretRef revokes its key within 2 s — its tokens get the
// keys-unavailable 503 and the policy is SecretNotFound — and writing it
// again restores both within 2 s.
func TestSecretFileRemovedIsRevoked(t *testing.T) {
	key := jwttest.NewHS256(t)
	secrets := t.TempDir()
	file := filepath.Join(secrets, "shop", "auth", "jwt-secret")
	writeSecret := func() {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, key.Secret(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeSecret()
	h := start(t, map[string]string{"hs.yaml": hsPolicy}, func(o *server.Options) { o.SecretsDir = secrets })
	token := key.Mint(t, jwttest.Claims("alice", issuer, "", time.Now(), time.Hour))
	status := func() policyset.Status {
		st, _ := h.srv.Policies().StatusFrom("shop", "hs", policyset.Origin{File: "hs.yaml"})
		return st
	}
	within := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 2s: %s (status %+v)", what, status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	answer := func() int { return grpcOutcome(h.check(checkRequest("/x", token, nil, nil))).status }
	if got := answer(); got != 200 || !status().Ready() {
		t.Fatalf("with the secret: %d, status %+v", got, status())
	}

	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	within("a token signed with the removed secret is 503", func() bool { return answer() == 503 })
	within("the policy is SecretNotFound", func() bool { return status().Reason == v1alpha1.ReasonSecretNotFound })

	writeSecret()
	within("the token verifies again", func() bool { return answer() == 200 })
	within("the policy is Accepted", func() bool { return status().Ready() })
}
