package controller_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/kubetest"
	"github.com/tollgate-dev/tollgate/pkg/jwt/jwttest"
	"github.com/tollgate-dev/tollgate/pkg/policy/policytest"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

// TestApplyUpdateDeleteAreEnforced: a policy applied with kubectl is
// enforced by a running tollgate within 2 s, so is an update, and a delete
// gives the request back to the default action (deny) within 2 s.
func TestApplyUpdateDeleteAreEnforced(t *testing.T) {
	env, ns, in := scene(t, "lifecycle")
	host, key := ns+".example.test", jwttest.NewEd25519(t)

	if got := in.check(host, "GET", "/api/public", ""); got != http.StatusForbidden {
		t.Fatalf("before any policy: %d, want the default action (403)", got)
	}
	ap := policy(ns, "tasks", host, key, policytest.AnonymousRule("public", "/api/public"), private())
	create(t, env.Client, ap)
	in.expect(enforcedWithin, host, "/api/public", "", http.StatusOK)
	if got := in.check(host, "GET", "/api/private", ""); got != http.StatusUnauthorized {
		t.Errorf("a private path without a token: %d, want 401", got)
	}
	if got := in.check(host, "GET", "/api/private", token(t, key, "alice")); got != http.StatusOK {
		t.Errorf("a private path with a token: %d, want 200", got)
	}
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)

	edit(t, env.Client, ns, "tasks", func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules[0].Path = "/api/open" })
	in.expect(enforcedWithin, host, "/api/open", "", http.StatusOK)
	if got := in.check(host, "GET", "/api/public", ""); got != http.StatusUnauthorized {
		t.Errorf("the path the update made private: %d, want 401", got)
	}

	remove(t, env.Client, ap)
	in.expect(enforcedWithin, host, "/api/open", "", http.StatusForbidden)
}

// TestInvalidEditKeepsLastGoodVersion: an edit that the CRD admits but the
// compiler rejects keeps the policy's last good version serving, says why
// with the field path, and holds back no other policy.
func TestInvalidEditKeepsLastGoodVersion(t *testing.T) {
	env, ns, in := scene(t, "invalid")
	hostA, hostB := "a."+ns+".example.test", "b."+ns+".example.test"
	key := jwttest.NewEd25519(t)

	create(t, env.Client, policy(ns, "a", hostA, key, policytest.AnonymousRule("public", "/api/public"), private()))
	create(t, env.Client, policy(ns, "b", hostB, key, policytest.AnonymousRule("public", "/api/b1"), private()))
	waitStatus(t, env.Client, ns, "a", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	waitStatus(t, env.Client, ns, "b", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, hostA, "/api/public", "", http.StatusOK)

	// "**" only as the last segment: the schema cannot say it, the compiler does.
	edit(t, env.Client, ns, "a", func(ap *v1alpha1.AuthPolicy) {
		ap.Spec.Rules[0].Path = "/api/changed"
		ap.Spec.Rules[1].Path = "/api/**/x"
	})
	edit(t, env.Client, ns, "b", func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules[0].Path = "/api/b2" })

	in.expect(enforcedWithin, hostB, "/api/b2", "", http.StatusOK)
	cond := waitStatus(t, env.Client, ns, "a", metav1.ConditionFalse, v1alpha1.ReasonInvalidSpec, "spec.rules[1].path")
	t.Logf("Ready=%s %s: %s", cond.Status, cond.Reason, cond.Message)
	// The last good version of a still serves, the broken one does not.
	if got := in.check(hostA, "GET", "/api/public", ""); got != http.StatusOK {
		t.Errorf("a's last good version: /api/public %d, want 200", got)
	}
	if got := in.check(hostA, "GET", "/api/changed", ""); got != http.StatusUnauthorized {
		t.Errorf("a's broken version serves: /api/changed %d, want 401", got)
	}
	// The leader recorded the transition as a Warning Event.
	eventually(t, 10*time.Second, "an InvalidSpec Event for a", func() bool {
		var list eventsv1.EventList
		if err := env.Client.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Regarding.Name == "a" && e.Reason == v1alpha1.ReasonInvalidSpec && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Note, "spec.rules[1].path") {
				return true
			}
		}
		return false
	})
}

// TestSecretRef: a policy whose HS256 secret is missing says so; once the
// Secret exists the policy is Ready and its tokens verify; a rotation
// applies within 2 s; and a policy can never read another namespace's
// Secret.
func TestSecretRef(t *testing.T) {
	env := kube(t)
	ns, other := env.Namespace(t, "secret"), env.Namespace(t, "thief")
	cleanup(t, env.Client, ns, other)
	host, thiefHost := ns+".example.test", other+".example.test"
	in := start(t, asTollgate(t, env), config{})
	hsPolicy := func(ns, host string) *v1alpha1.AuthPolicy {
		return policytest.New(policytest.WithName(ns, "hs"), policytest.WithHosts(host), policytest.WithPathPrefix("/api"),
			policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: "jwt", Key: "secret"}, Algorithms: []string{"HS256"}}),
			policytest.WithRule(private()), func(ap *v1alpha1.AuthPolicy) { ap.TypeMeta = metav1.TypeMeta{} })
	}
	k1, k2 := jwttest.NewHS256(t), jwttest.NewHS256(t)

	create(t, env.Client, hsPolicy(ns, host))
	waitStatus(t, env.Client, ns, "hs", metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, ns+"/jwt")

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jwt"}, Data: map[string][]byte{"secret": k1.Secret()}}
	create(t, env.Client, secret)
	waitStatus(t, env.Client, ns, "hs", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, host, "/api/x", token(t, k1, "alice"), http.StatusOK)

	secret.Data["secret"] = k2.Secret()
	if err := env.Client.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	in.expect(enforcedWithin, host, "/api/x", token(t, k2, "alice"), http.StatusOK)
	in.expect(enforcedWithin, host, "/api/x", token(t, k1, "alice"), http.StatusUnauthorized)

	// The same secretRef in another namespace names that namespace's
	// Secret, which does not exist: ns's Secret is out of reach.
	create(t, env.Client, hsPolicy(other, thiefHost))
	waitStatus(t, env.Client, other, "hs", metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, other+"/jwt")
	if got := in.check(thiefHost, "GET", "/api/x", token(t, k2, "mallory")); got == http.StatusOK {
		t.Errorf("a token signed with another namespace's Secret is accepted")
	}
}

// TestDeletedSecretRevokes: deleting the Secret a policy's secretRef names
// revokes its key: the policy goes Ready=False SecretNotFound, and a token
// signed with it gets the keys-unavailable 503 (not the default action,
// not an allow) within 2 s; creating the Secret again restores both
// within 2 s.
func TestDeletedSecretRevokes(t *testing.T) {
	env, ns, in := scene(t, "revoke")
	host := ns + ".example.test"
	create(t, env.Client, policytest.New(policytest.WithName(ns, "hs"), policytest.WithHosts(host), policytest.WithPathPrefix("/api"),
		policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: "jwt", Key: "secret"}, Algorithms: []string{"HS256"}}),
		policytest.WithRule(private()), func(ap *v1alpha1.AuthPolicy) { ap.TypeMeta = metav1.TypeMeta{} }))
	k := jwttest.NewHS256(t)
	newSecret := func() *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "jwt"}, Data: map[string][]byte{"secret": k.Secret()}}
	}
	secret := newSecret()
	create(t, env.Client, secret)
	waitStatus(t, env.Client, ns, "hs", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	tok := token(t, k, "alice")
	in.expect(enforcedWithin, host, "/api/x", tok, http.StatusOK)

	remove(t, env.Client, secret)
	in.expect(enforcedWithin, host, "/api/x", tok, http.StatusServiceUnavailable)
	waitStatus(t, env.Client, ns, "hs", metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, ns+"/jwt")

	create(t, env.Client, newSecret())
	in.expect(enforcedWithin, host, "/api/x", tok, http.StatusOK)
	waitStatus(t, env.Client, ns, "hs", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

// TestConflictResolvedByDelete: of two policies with the same host and
// prefix the newer is Conflict and does not serve; deleting the older lets
// it serve and go Ready within 2 s.
func TestConflictResolvedByDelete(t *testing.T) {
	env, ns, in := scene(t, "conflict")
	host, key := ns+".example.test", jwttest.NewEd25519(t)

	older := policy(ns, "a-older", host, key, policytest.AnonymousRule("a", "/api/a"))
	createOlder(t, env.Client, older)
	waitStatus(t, env.Client, ns, "a-older", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	create(t, env.Client, policy(ns, "b-newer", host, key, policytest.AnonymousRule("b", "/api/b")))
	waitStatus(t, env.Client, ns, "b-newer", metav1.ConditionFalse, v1alpha1.ReasonConflict, "a-older")
	if got := in.check(host, "GET", "/api/b", ""); got == http.StatusOK {
		t.Errorf("the newer, conflicting policy serves /api/b")
	}
	in.expect(enforcedWithin, host, "/api/a", "", http.StatusOK)

	remove(t, env.Client, older)
	in.expect(enforcedWithin, host, "/api/b", "", http.StatusOK)
	waitStatus(t, env.Client, ns, "b-newer", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

// TestHostBelongsToNamespace: a policy in a second namespace that names
// the first namespace's host, with a longer prefix and an anonymous rule,
// does not serve for it and is Conflict; the first namespace's policy
// decides those requests.
func TestHostBelongsToNamespace(t *testing.T) {
	env, shop, evil, in := shopAndEvil(t)
	host := shop + ".example.test"
	key := jwttest.NewEd25519(t)

	createOlder(t, env.Client, policy(shop, "tasks", host, key, policytest.OwnTasksRule()))
	waitStatus(t, env.Client, shop, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	create(t, env.Client, grabPolicy(evil, "grab", host))
	waitStatus(t, env.Client, evil, "grab", metav1.ConditionFalse, v1alpha1.ReasonConflict, shop)

	if got := in.check(host, "GET", "/api/users/bob/tasks/1", ""); got != http.StatusUnauthorized {
		t.Errorf("bob's tasks without a token: %d, want 401 from %s's policy", got, shop)
	}
	if got := in.check(host, "GET", "/api/users/bob/tasks/1", token(t, key, "bob")); got != http.StatusOK {
		t.Errorf("bob's tasks with bob's token: %d, want 200", got)
	}
	if got := in.check(host, "GET", "/api/users/bob/tasks/1", token(t, key, "mallory")); got != http.StatusForbidden {
		t.Errorf("bob's tasks with mallory's token: %d, want 403", got)
	}
}

// shopAndEvil sets up a test of two namespaces (their AuthPolicies
// deleted at the end) and a ready tollgate watching every namespace.
func shopAndEvil(t *testing.T) (env *kubetest.Env, shop, evil string, in *instance) {
	t.Helper()
	env = kube(t)
	shop, evil = env.Namespace(t, "shop"), env.Namespace(t, "evil")
	cleanup(t, env.Client, shop, evil)
	return env, shop, evil, start(t, asTollgate(t, env), config{})
}

// grabPolicy is ns/name on host with prefix /api/users, where an
// anonymous rule allows everything: another namespace's users' data, if
// it were served.
func grabPolicy(ns, name, host string) *v1alpha1.AuthPolicy {
	return policytest.New(policytest.WithName(ns, name), policytest.WithHosts(host), policytest.WithPathPrefix("/api/users"),
		policytest.WithJWT(nil), policytest.WithRule(policytest.AnonymousRule("all", "/api/users/**")),
		func(ap *v1alpha1.AuthPolicy) { ap.TypeMeta = metav1.TypeMeta{} })
}

// TestWildcardHostBelongsToNamespace: a namespace's wildcard owns every
// name under it: another namespace's newer policy on a name (or a
// narrower wildcard) under it is Conflict naming the owner and does not
// serve; deleting the wildcard's policy re-decides, and the newer policy
// serves within 2 s.
func TestWildcardHostBelongsToNamespace(t *testing.T) {
	env, shop, evil, in := shopAndEvil(t)
	domain := shop + ".example.test"
	key := jwttest.NewEd25519(t)

	wild := policy(shop, "wild", "*."+domain, key, policytest.OwnTasksRule())
	createOlder(t, env.Client, wild)
	waitStatus(t, env.Client, shop, "wild", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	create(t, env.Client, grabPolicy(evil, "name", "api."+domain))
	create(t, env.Client, grabPolicy(evil, "narrower", "*.eu."+domain))
	waitStatus(t, env.Client, evil, "name", metav1.ConditionFalse, v1alpha1.ReasonConflict, "under *."+domain, "namespace "+shop)
	waitStatus(t, env.Client, evil, "narrower", metav1.ConditionFalse, v1alpha1.ReasonConflict, "under *."+domain, "namespace "+shop)
	for _, host := range []string{"api." + domain, "x.eu." + domain} {
		if got := in.check(host, "GET", "/api/users/bob/tasks/1", ""); got != http.StatusUnauthorized {
			t.Errorf("%s: bob's tasks without a token: %d, want 401 from %s's wildcard", host, got, shop)
		}
	}

	remove(t, env.Client, wild)
	in.expect(enforcedWithin, "api."+domain, "/api/users/bob/tasks/1", "", http.StatusOK)
	in.expect(enforcedWithin, "x.eu."+domain, "/api/users/bob/tasks/1", "", http.StatusOK)
	waitStatus(t, env.Client, evil, "name", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
}

// TestStatusWrittenOnlyWhenChanged: a change that leaves the status as it
// is (a label) is looked at by the status writer but written nowhere; a
// status write never triggers a recompile; and the status says what the
// printer columns show.
func TestStatusWrittenOnlyWhenChanged(t *testing.T) {
	env, ns, in := scene(t, "quiet")
	key := jwttest.NewEd25519(t)

	create(t, env.Client, policy(ns, "tasks", ns+".example.test", key, private()))
	waitStatus(t, env.Client, ns, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	writes := in.statusWrites()
	if writes < 1 {
		t.Fatalf("status written %v times, want at least once", writes)
	}
	looked := in.metric("controller_runtime_reconcile_total", map[string]string{"controller": "authpolicy-status"})
	compiled := in.metric("controller_runtime_reconcile_total", map[string]string{"controller": "authpolicy"})
	edit(t, env.Client, ns, "tasks", func(ap *v1alpha1.AuthPolicy) { ap.Labels = map[string]string{"team": "tasks"} })
	eventually(t, 10*time.Second, "the status writer looked at the relabelled policy", func() bool {
		return in.metric("controller_runtime_reconcile_total", map[string]string{"controller": "authpolicy-status"}) > looked
	})
	if got := in.statusWrites(); got != writes {
		t.Errorf("status writes %v after a label change, want %v (nothing changed)", got, writes)
	}
	if got := in.metric("controller_runtime_reconcile_total", map[string]string{"controller": "authpolicy"}); got != compiled {
		t.Errorf("serving reconciles %v after a label change, want %v (generation unchanged)", got, compiled)
	}
}

// TestPrinterColumns: `kubectl get authpolicies` shows READY, REASON and
// AGE (the API server's Table for the CRD's printer columns) for an
// Accepted, an InvalidSpec and a Conflict policy. When kubectl is next to
// the envtest binaries (hack/envtest-tools.sh kubectl), the test also runs
// `kubectl get authpolicies -A` and logs what it prints.
func TestPrinterColumns(t *testing.T) {
	env, ns, _ := scene(t, "table")
	host := ns + ".example.test"
	key := jwttest.NewEd25519(t)
	createOlder(t, env.Client, policy(ns, "tasks", host, key, private()))
	create(t, env.Client, policy(ns, "tasks-copy", host, key, private()))
	create(t, env.Client, policy(ns, "typo", "typo."+host, key, v1alpha1.Rule{Name: "bad", Path: "/api/**/x"}))
	want := map[string][2]string{
		"tasks":      {"True", v1alpha1.ReasonAccepted},
		"tasks-copy": {"False", v1alpha1.ReasonConflict},
		"typo":       {"False", v1alpha1.ReasonInvalidSpec},
	}
	for name, w := range want {
		waitStatus(t, env.Client, ns, name, metav1.ConditionStatus(w[0]), w[1])
	}

	table := getTable(t, env, "/apis/tollgate.dev/v1alpha1/namespaces/"+ns+"/authpolicies")
	var cols []string
	for _, c := range table.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if got, want := strings.Join(cols, ","), "Name,Ready,Reason,Age"; got != want {
		t.Fatalf("columns %s, want %s", got, want)
	}
	if len(table.Rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(table.Rows), len(want))
	}
	for _, row := range table.Rows {
		name, _ := row.Cells[0].(string)
		if w := want[name]; row.Cells[1] != w[0] || row.Cells[2] != w[1] {
			t.Errorf("row %v, want %s %s %s", row.Cells, name, w[0], w[1])
		}
	}

	kubectl := filepath.Join(env.AssetsDir, "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Logf("no %s: not running kubectl", kubectl)
		return
	}
	out, err := exec.Command(kubectl, "--kubeconfig", env.WriteKubeconfig(t, kubetest.KubeconfigOptions{}), "get", "authpolicies", "-A").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl: %v\n%s", err, out)
	}
	t.Logf("kubectl get authpolicies -A\n%s", out)
	if !strings.Contains(string(out), "READY") || !strings.Contains(string(out), "REASON") {
		t.Errorf("kubectl prints no READY and REASON columns")
	}
}

// getTable asks the API server for path as a Table, as kubectl get does.
func getTable(t *testing.T, env *kubetest.Env, path string) *metav1.Table {
	t.Helper()
	hc, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest("GET", strings.TrimSuffix(env.Config.Host, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		t.Fatal(err)
	}
	return &table
}

// TestKeyURLsNeverReachLinkLocal: a jwksURI at a link-local (cloud
// metadata) address is refused at dial time, so tollgate's pod never
// connects to it, and the policy's status says why.
func TestKeyURLsNeverReachLinkLocal(t *testing.T) {
	env, ns, _ := scene(t, "metadata")
	for name, uri := range map[string]string{
		"imds":      "http://169.254.169.254/latest/meta-data/jwks",
		"ipv6-link": "http://[fe80::1]:8080/jwks",
	} {
		ap := policytest.New(policytest.WithName(ns, name), policytest.WithHosts(name+"."+ns+".example.test"),
			policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, JWKSURI: uri}), policytest.WithRule(private()),
			func(ap *v1alpha1.AuthPolicy) { ap.TypeMeta = metav1.TypeMeta{} })
		create(t, env.Client, ap)
	}
	waitStatus(t, env.Client, ns, "imds", metav1.ConditionFalse, v1alpha1.ReasonJWKSUnavailable, "link-local", "169.254.169.254")
	waitStatus(t, env.Client, ns, "ipv6-link", metav1.ConditionFalse, v1alpha1.ReasonJWKSUnavailable, "link-local", "fe80::1")
}

// TestWatchOneNamespace: with --namespace, tollgate serves the policies
// of that namespace only (and writes status for no other), and reads
// Secrets there.
func TestWatchOneNamespace(t *testing.T) {
	env := kube(t)
	mine, other := env.Namespace(t, "mine"), env.Namespace(t, "notmine")
	cleanup(t, env.Client, mine, other)
	key := jwttest.NewEd25519(t)
	in := start(t, asTollgate(t, env), config{Namespace: mine})

	create(t, env.Client, policy(other, "tasks", other+".example.test", key, policytest.AnonymousRule("public", "/api/public")))
	create(t, env.Client, policy(mine, "tasks", mine+".example.test", key, policytest.AnonymousRule("public", "/api/public")))
	in.expect(enforcedWithin, mine+".example.test", "/api/public", "", http.StatusOK)
	waitStatus(t, env.Client, mine, "tasks", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	if got := in.check(other+".example.test", "GET", "/api/public", ""); got != http.StatusForbidden {
		t.Errorf("a policy of another namespace: %d, want the default action (403)", got)
	}
	if c := ready(t, env.Client, other, "tasks"); c != nil {
		t.Errorf("status written for a policy of another namespace: %v", c)
	}

	k := jwttest.NewHS256(t)
	hs := policytest.New(policytest.WithName(mine, "hs"), policytest.WithHosts("hs."+mine+".example.test"), policytest.WithPathPrefix("/api"),
		policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: "jwt", Key: "secret"}, Algorithms: []string{"HS256"}}),
		policytest.WithRule(private()), func(ap *v1alpha1.AuthPolicy) { ap.TypeMeta = metav1.TypeMeta{} })
	create(t, env.Client, hs)
	create(t, env.Client, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: mine, Name: "jwt"}, Data: map[string][]byte{"secret": k.Secret()}})
	waitStatus(t, env.Client, mine, "hs", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, "hs."+mine+".example.test", "/api/x", token(t, k, "alice"), http.StatusOK)
}

// TestSecretScope: tollgate caches only Opaque Secrets, and with
// --secret-label-selector only labelled ones; a secretRef to any other
// Secret is SecretNotFound, and the message says which Secrets are read.
func TestSecretScope(t *testing.T) {
	env := kube(t)
	ns := env.Namespace(t, "scope")
	cleanup(t, env.Client, ns)
	const selector = "tollgate.dev/jwt-secret=true"
	labelled := map[string]string{"tollgate.dev/jwt-secret": "true"}
	in := start(t, asTollgate(t, env), config{SecretLabels: selector})
	k := jwttest.NewHS256(t)
	hsPolicy := func(name string) *v1alpha1.AuthPolicy {
		return policytest.New(policytest.WithName(ns, name), policytest.WithHosts(name+"."+ns+".example.test"), policytest.WithPathPrefix("/api"),
			policytest.WithJWT(&v1alpha1.JWT{Issuer: issuer, SecretRef: &v1alpha1.SecretKeyRef{Name: name, Key: "secret"}, Algorithms: []string{"HS256"}}),
			policytest.WithRule(private()), func(ap *v1alpha1.AuthPolicy) { ap.TypeMeta = metav1.TypeMeta{} })
	}
	secret := func(name string, typ corev1.SecretType, labels map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Type: typ, Data: map[string][]byte{"secret": k.Secret()}}
	}
	unlabelled := secret("unlabelled", corev1.SecretTypeOpaque, nil)
	create(t, env.Client, secret("custom-type", "example.com/custom", labelled))
	create(t, env.Client, unlabelled)
	// The Secret informer delivers events in order: once the control
	// policy's Secret (created last) is read, so have the others been.
	create(t, env.Client, secret("control", corev1.SecretTypeOpaque, labelled))
	create(t, env.Client, hsPolicy("control"))
	waitStatus(t, env.Client, ns, "control", metav1.ConditionTrue, v1alpha1.ReasonAccepted)

	for _, name := range []string{"custom-type", "unlabelled"} {
		create(t, env.Client, hsPolicy(name))
		waitStatus(t, env.Client, ns, name, metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, "type Opaque", "labels "+selector)
		if got := in.check(name+"."+ns+".example.test", "GET", "/api/x", token(t, k, "alice")); got == http.StatusOK {
			t.Errorf("%s: a token signed with a Secret tollgate must not read is accepted", name)
		}
	}

	unlabelled.Labels = labelled
	if err := env.Client.Update(context.Background(), unlabelled); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, env.Client, ns, "unlabelled", metav1.ConditionTrue, v1alpha1.ReasonAccepted)
	in.expect(enforcedWithin, "unlabelled."+ns+".example.test", "/api/x", token(t, k, "alice"), http.StatusOK)
}

// TestFilesAndKubernetesTogether: policy files and AuthPolicy objects are
// served side by side, and tollgate is ready once both are loaded. An
// object with the namespace/name of a file's policy is a Conflict that
// names the file: it neither replaces the file's policy nor takes its
// status, and deleting it leaves the file's policy serving.
func TestFilesAndKubernetesTogether(t *testing.T) {
	env := kube(t)
	ns := env.Namespace(t, "both")
	cleanup(t, env.Client, ns)
	key := jwttest.NewEd25519(t)
	dir := t.TempDir()
	file := policy(ns, "from-file", "file."+ns+".example.test", key, policytest.AnonymousRule("public", "/api/file"))
	file.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AuthPolicy"}
	data, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	create(t, env.Client, policy(ns, "from-cluster", "kube."+ns+".example.test", key, policytest.AnonymousRule("public", "/api/kube")))

	in := start(t, asTollgate(t, env), config{}, func(o *server.Options) { o.PolicyPaths = []string{dir} })
	if got := in.check("file."+ns+".example.test", "GET", "/api/file", ""); got != http.StatusOK {
		t.Errorf("the file's policy: %d, want 200", got)
	}
	if got := in.check("kube."+ns+".example.test", "GET", "/api/kube", ""); got != http.StatusOK {
		t.Errorf("the cluster's policy: %d, want 200", got)
	}

	// The same namespace/name in the cluster, on a host of its own.
	twin := policy(ns, "from-file", "twin."+ns+".example.test", key, policytest.AnonymousRule("public", "/api/twin"))
	create(t, env.Client, twin)
	waitStatus(t, env.Client, ns, "from-file", metav1.ConditionFalse, v1alpha1.ReasonConflict, "policy file "+path)
	if got := in.check("twin."+ns+".example.test", "GET", "/api/twin", ""); got == http.StatusOK {
		t.Errorf("the object that shares the file's policy name serves")
	}
	if got := in.check("file."+ns+".example.test", "GET", "/api/file", ""); got != http.StatusOK {
		t.Errorf("the file's policy after an object of its name: %d, want 200", got)
	}
	remove(t, env.Client, twin)
	// One reconciler applies events in order: once an object created
	// after the delete serves, the delete has been applied.
	create(t, env.Client, policy(ns, "after", "after."+ns+".example.test", key, policytest.AnonymousRule("public", "/api/after")))
	in.expect(enforcedWithin, "after."+ns+".example.test", "/api/after", "", http.StatusOK)
	if got := in.check("file."+ns+".example.test", "GET", "/api/file", ""); got != http.StatusOK {
		t.Errorf("the file's policy after the object of its name was deleted: %d, want 200", got)
	}
}
