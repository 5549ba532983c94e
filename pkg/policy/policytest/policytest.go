// Package policytest builds AuthPolicy objects for tests with functional
// modifiers: policytest.New(policytest.WithRule(...)).
package policytest

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
)

// A Modifier changes a policy under construction.
type Modifier func(*v1alpha1.AuthPolicy)

// New returns a valid policy "shop/tasks-api" with an inline-JWKS jwt block
// and no rules, changed by mods. Add at least one rule to compile it.
func New(mods ...Modifier) *v1alpha1.AuthPolicy {
	ap := &v1alpha1.AuthPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AuthPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "tasks-api"},
		Spec: v1alpha1.AuthPolicySpec{
			JWT: &v1alpha1.JWT{Issuer: "https://auth.example.com", JWKS: `{"keys":[]}`},
		},
	}
	for _, m := range mods {
		m(ap)
	}
	return ap
}

// WithName sets namespace and name.
func WithName(namespace, name string) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Namespace, ap.Name = namespace, name }
}

// WithHosts sets spec.hosts.
func WithHosts(hosts ...string) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Spec.Hosts = hosts }
}

// WithPathPrefix sets spec.pathPrefix.
func WithPathPrefix(prefix string) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Spec.PathPrefix = prefix }
}

// WithJWT replaces the jwt block.
func WithJWT(jwt *v1alpha1.JWT) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Spec.JWT = jwt }
}

// WithJWTChange edits the jwt block in place.
func WithJWTChange(f func(*v1alpha1.JWT)) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { f(ap.Spec.JWT) }
}

// WithLimit appends a policy-level limit.
func WithLimit(l v1alpha1.Limit) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Spec.Limits = append(ap.Spec.Limits, l) }
}

// WithRule appends a rule.
func WithRule(r v1alpha1.Rule) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Spec.Rules = append(ap.Spec.Rules, r) }
}

// WithMode sets spec.mode.
func WithMode(mode string) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Spec.Mode = mode }
}

// OwnTasksRule is the rule of the tasks scenario: a user's own tasks, with
// an admin bypass.
func OwnTasksRule() v1alpha1.Rule {
	return v1alpha1.Rule{
		Name:    "own-tasks",
		Methods: []string{"GET", "PUT", "PATCH", "DELETE"},
		Path:    "/api/users/{userId}/tasks/**",
		Owner: &v1alpha1.Owner{
			Claim:   "sub",
			Path:    "userId",
			AllowIf: &v1alpha1.ClaimValues{Claim: "role", Values: []string{"admin"}},
		},
	}
}

// WithCreated sets metadata.creationTimestamp, the age that decides
// conflicts and host ownership.
func WithCreated(t time.Time) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.CreationTimestamp = metav1.NewTime(t) }
}

// WithGeneration sets metadata.generation.
func WithGeneration(g int64) Modifier {
	return func(ap *v1alpha1.AuthPolicy) { ap.Generation = g }
}

// AnonymousRule is a rule that needs no token for path.
func AnonymousRule(name, path string) v1alpha1.Rule {
	return v1alpha1.Rule{Name: name, Path: path, Anonymous: true}
}
