package controller

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// ErrSecretNotFound means the Secret a secretRef names is not in the cache
// (or has no such key). It is a jwt.ErrSecretNotFound: the key of a Secret
// that is deleted is revoked.
var ErrSecretNotFound error = secretNotFound{}

type secretNotFound struct{}

func (secretNotFound) Error() string        { return "controller: Secret not found" }
func (secretNotFound) Is(target error) bool { return target == jwt.ErrSecretNotFound }

// A SecretCache is a jwt.SecretResolver over the Secrets the controller's
// informer watches. The informer's event handler stores each Secret's data
// on add, update and delete, and Secret reads it with one lock-free map
// load, so resolving a secret never waits on the API server or on a lock
// shared with other requests.
//
// A reference resolves only within its own namespace (jwt.SecretRef carries
// the policy's namespace; AuthPolicy's secretRef has no namespace field),
// so a policy can never read another namespace's Secret.
type SecretCache struct {
	// data maps a Secret's namespace/name to its data. A stored map is
	// never modified: an update stores the new object's map.
	data sync.Map // types.NamespacedName -> map[string][]byte
	// scope says which Secrets are watched, for not-found messages.
	scope string
}

var _ jwt.SecretResolver = (*SecretCache)(nil)

// NewSecretCache returns an empty SecretCache. It is filled once a
// Controller built with it runs.
func NewSecretCache() *SecretCache { return &SecretCache{} }

// Secret implements jwt.SecretResolver.
func (c *SecretCache) Secret(_ context.Context, ref jwt.SecretRef) ([]byte, error) {
	v, ok := c.data.Load(types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name})
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s%s", ErrSecretNotFound, ref.Namespace, ref.Name, c.scope)
	}
	b, ok := v.(map[string][]byte)[ref.Key]
	if !ok {
		return nil, fmt.Errorf("%w: Secret %s/%s has no key %q", ErrSecretNotFound, ref.Namespace, ref.Name, ref.Key)
	}
	return b, nil
}

func (c *SecretCache) store(obj any) {
	if s, ok := obj.(*corev1.Secret); ok {
		data := s.Data
		if data == nil {
			data = map[string][]byte{}
		}
		c.data.Store(types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, data)
	}
}

func (c *SecretCache) remove(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if s, ok := obj.(*corev1.Secret); ok {
		c.data.Delete(types.NamespacedName{Namespace: s.Namespace, Name: s.Name})
	}
}

// handler keeps c current from the Secret informer's events.
func (c *SecretCache) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.store(obj) },
		UpdateFunc: func(_, obj any) { c.store(obj) },
		DeleteFunc: c.remove,
	}
}

// stripSecret keeps what tollgate reads of a cached Secret (name,
// namespace, labels, type and data) and drops the rest, above all the
// managed fields and kubectl's last-applied annotation, which holds a
// second copy of the data.
func stripSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	s.Annotations = nil
	s.OwnerReferences = nil
	s.StringData = nil
	return s, nil
}

// secretRefIndex indexes AuthPolicies by the name of the Secret their
// jwt.secretRef names, so that a Secret change requeues only the policies
// that use it.
const secretRefIndex = "spec.jwt.secretRef.name"

func secretRefName(obj client.Object) []string {
	ap, ok := obj.(*v1alpha1.AuthPolicy)
	if !ok || ap.Spec.JWT == nil || ap.Spec.JWT.SecretRef == nil {
		return nil
	}
	return []string{ap.Spec.JWT.SecretRef.Name}
}

// policiesForSecret maps a Secret to the policies of its namespace whose
// secretRef names it.
func policiesForSecret(r client.Reader) func(context.Context, client.Object) []reconcile.Request {
	return func(ctx context.Context, secret client.Object) []reconcile.Request {
		var list v1alpha1.AuthPolicyList
		if err := r.List(ctx, &list, client.InNamespace(secret.GetNamespace()),
			client.MatchingFields{secretRefIndex: secret.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
		return reqs
	}
}
