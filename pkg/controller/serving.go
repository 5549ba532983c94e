package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
)

// servingReconciler feeds this replica's policy set from its informer
// cache. Every replica runs it (no leader election): decisions never wait
// on the API server or on another replica.
type servingReconciler struct {
	cache client.Reader
	set   PolicySet
	start *startup
	// secretsSynced is closed once the Secret cache holds the first list,
	// so that a policy is never judged SecretNotFound only because the
	// Secret informer had not caught up yet.
	secretsSynced <-chan struct{}
}

var _ reconcile.Reconciler = (*servingReconciler)(nil)

// Reconcile applies the cached version of the policy to the set, or
// deletes it from the set when it is gone. It never fails on a policy's
// content: an invalid spec is a status the set reports, and retrying could
// not help. It returns an error only when the cache cannot be read.
func (r *servingReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	select {
	case <-r.secretsSynced:
	case <-ctx.Done():
		return reconcile.Result{}, ctx.Err()
	}
	var ap v1alpha1.AuthPolicy
	if err := r.cache.Get(ctx, req.NamespacedName, &ap); err != nil {
		if apierrors.IsNotFound(err) {
			r.set.Delete(req.Namespace, req.Name)
			r.start.reconciled(req.NamespacedName, gone)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("read AuthPolicy %s from the cache: %w", req.NamespacedName, err)
	}
	r.set.Apply(&ap)
	r.start.reconciled(req.NamespacedName, ap.Generation)
	return reconcile.Result{}, nil
}
