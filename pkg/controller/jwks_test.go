package controller_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
)

// TestJWKSUnavailableKeepsLastGoodVersion: an edit to a jwksURI that
// cannot be fetched makes the policy Ready=False JWKSUnavailable with a
// message naming the URL; its last good version keeps verifying tokens and
// another policy is untouched. Once the key set can be fetched, the new
// version serves and the policy is Accepted.
func TestJWKSUnavailableKeepsLastGoodVersion(t *testing.T) {
	env, ns, in := scene(t, "jwks")
	hostA, hostB := "a."+ns+".example.test", "b."+ns+".example.test"
	oldKey, newKey := jwttest.NewEd25519(t), jwttest.NewEd25519(t)

	var up atomic.Bool
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(newKey.JWKS()))
	}))
	t.Cleanup(jwks.Close)

	create(t, env.Client, policy(ns, "a", hostA, oldKey, private()))
	create(t, env.Client, policy(ns, "b", hostB, oldKey, private()))
	waitStatus(t, env.Client, ns, "a", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, hostA, "/api/x", token(t, oldKey, "alice"), 200)

	edit(t, env.Client, ns, "a", func(ap *v1alpha1.AuthPolicy) {
		ap.Spec.JWT = &v1alpha1.JWT{Issuer: issuer, JWKSURI: jwks.URL + "/jwks"}
	})
	cond := waitStatus(t, env.Client, ns, "a", metav1.ConditionFalse, v1alpha1.ReasonJWKSUnavailable, jwks.URL)
	t.Logf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
	if got := in.check(hostA, "GET", "/api/x", token(t, oldKey, "alice")); got != 200 {
		t.Errorf("a's last good version: a token of its key answered %d, want 200", got)
	}
	if got := in.check(hostB, "GET", "/api/x", token(t, oldKey, "bob")); got != 200 {
		t.Errorf("b, untouched: %d, want 200", got)
	}
	if r := ready(t, env.Client, ns, "b"); r == nil || r.Reason != v1alpha1.ReasonAccepted {
		t.Errorf("b's Ready: %+v, want Accepted", r)
	}

	up.Store(true)
	waitStatus(t, env.Client, ns, "a", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, hostA, "/api/x", token(t, newKey, "alice"), 200)
	in.expect(enforcedWithin, hostA, "/api/x", token(t, oldKey, "alice"), 401)
}

// TestSecretNotFoundEditKeepsLastGoodVersion: an edit whose secretRef names
// a Secret that does not exist makes the policy Ready=False SecretNotFound
// naming the Secret, while its last good version keeps serving; creating
// the Secret applies the edit within 2 s.
func TestSecretNotFoundEditKeepsLastGoodVersion(t *testing.T) {
	env, ns, in := scene(t, "secretedit")
	host := ns + ".example.test"
	key, hs := jwttest.NewEd25519(t), jwttest.NewHS256(t)

	create(t, env.Client, policy(ns, "a", host, key, private()))
	waitStatus(t, env.Client, ns, "a", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, host, "/api/x", token(t, key, "alice"), 200)

	edit(t, env.Client, ns, "a", func(ap *v1alpha1.AuthPolicy) {
		ap.Spec.JWT = &v1alpha1.JWT{Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: "later", Key: "k"}, Algorithms: []string{"HS256"}}
	})
	waitStatus(t, env.Client, ns, "a", metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, ns+"/later")
	if got := in.check(host, "GET", "/api/x", token(t, key, "alice")); got != 200 {
		t.Errorf("the last good version: %d, want 200", got)
	}

	create(t, env.Client, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"}, Data: map[string][]byte{"k": hs.Secret()}})
	in.expect(enforcedWithin, host, "/api/x", token(t, hs, "alice"), 200)
	waitStatus(t, env.Client, ns, "a", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

// TestSameSecondOwnerIsTheFirstCreated: two policies naming one host,
// created in the same second (creationTimestamp's resolution) by two
// namespaces: the first created owns the host, whatever the namespaces'
// names, and the second is Conflict naming it.
func TestSameSecondOwnerIsTheFirstCreated(t *testing.T) {
	env := kube(t)
	// evil's namespace sorts before shop's: a name order would pick evil.
	shop, evil := env.Namespace(t, "zshop"), env.Namespace(t, "aevil")
	cleanup(t, env.Client, shop, evil)
	in := start(t, asTollgate(t, env), config{})
	key := jwttest.NewEd25519(t)
	for attempt := 0; ; attempt++ {
		host := fmt.Sprintf("a%d.%s.example.test", attempt, shop)
		first := policy(shop, fmt.Sprintf("tasks-%d", attempt), host, key, private())
		second := grabPolicy(evil, fmt.Sprintf("grab-%d", attempt), host)
		create(t, env.Client, first)
		create(t, env.Client, second)
		if !first.CreationTimestamp.Equal(&second.CreationTimestamp) {
			remove(t, env.Client, second)
			remove(t, env.Client, first)
			if attempt == 5 {
				t.Fatal("no two creations in the same second in 6 attempts")
			}
			continue
		}
		waitStatus(t, env.Client, shop, first.Name, metav1.ConditionTrue, v1alpha1.ReasonAccepted)
		waitStatus(t, env.Client, evil, second.Name, metav1.ConditionFalse, v1alpha1.ReasonConflict, "namespace "+shop)
		in.expect(enforcedWithin, host, "/api/users/bob/tasks", "", 401)
		return
	}
}
