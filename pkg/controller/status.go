package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

// maxMessage bounds a condition message (the API allows 32768 bytes).
const maxMessage = 4096

// statusReconciler writes each policy's Ready condition from the status
// the policy set reports. It runs on every replica so that its cache and
// queue are warm, but writes only while this replica holds the Lease; when
// it becomes leader every policy is looked at again.
type statusReconciler struct {
	cache    client.Reader
	status   client.StatusWriter
	set      PolicySet
	leading  func() bool
	recorder events.EventRecorder
	now      func() time.Time
	writes   *prometheus.CounterVec

	// written holds, per policy, the resourceVersion a status patch was
	// made from, until the cache shows a newer version: a reconcile that
	// reads the cache before the patch's own event reaches it (the policy
	// is queued by its watch and by the set's notifier alike) would
	// otherwise write the same status again.
	written sync.Map // types.NamespacedName -> string
}

var _ reconcile.Reconciler = (*statusReconciler)(nil)

// Reconcile makes the policy's status say what the set says about the
// generation it has applied. It writes nothing when this replica is not
// the leader, when the set has not applied the object's current generation
// yet (the set's OnStatus requeues the policy when it has), or when the
// status already says it; otherwise it patches only the status
// subresource, and records an Event when Ready's status or reason changes.
func (r *statusReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	if !r.leading() {
		return reconcile.Result{}, nil
	}
	var ap v1alpha1.AuthPolicy
	if err := r.cache.Get(ctx, req.NamespacedName, &ap); err != nil {
		r.written.Delete(req.NamespacedName)
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if from, ok := r.written.Load(req.NamespacedName); ok {
		if from == ap.ResourceVersion {
			// The cache has not seen this replica's last write yet; the
			// write's own event requeues the policy when it has.
			return reconcile.Result{}, nil
		}
		r.written.Delete(req.NamespacedName)
	}
	st, ok := r.set.Status(ap.Namespace, ap.Name)
	if !ok || st.ObservedGeneration != ap.Generation {
		return reconcile.Result{}, nil
	}
	orig := ap.DeepCopy()
	before := meta.FindStatusCondition(orig.Status.Conditions, v1alpha1.ConditionReady)
	cond := readyCondition(st, r.now())
	ap.Status.ObservedGeneration = st.ObservedGeneration
	meta.SetStatusCondition(&ap.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(orig.Status, ap.Status) {
		return reconcile.Result{}, nil
	}
	if err := r.status.Patch(ctx, &ap, client.MergeFrom(orig)); err != nil {
		r.writes.WithLabelValues("error").Inc()
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("patch status of AuthPolicy %s: %w", req.NamespacedName, err)
	}
	r.writes.WithLabelValues("success").Inc()
	r.written.Store(req.NamespacedName, orig.ResourceVersion)
	if before == nil || before.Status != cond.Status || before.Reason != cond.Reason {
		typ := corev1.EventTypeNormal
		if cond.Status != metav1.ConditionTrue {
			typ = corev1.EventTypeWarning
		}
		r.recorder.Eventf(&ap, nil, typ, cond.Reason, "Reconcile", "%s", cond.Message)
	}
	return reconcile.Result{}, nil
}

// readyCondition is the Ready condition for st.
func readyCondition(st policyset.Status, now time.Time) metav1.Condition {
	c := metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             metav1.ConditionFalse,
		Reason:             st.Reason,
		Message:            st.Message,
		ObservedGeneration: st.ObservedGeneration,
		LastTransitionTime: metav1.NewTime(now),
	}
	if st.Ready() {
		c.Status = metav1.ConditionTrue
	}
	if c.Message == "" {
		c.Message = "compiled and serving"
		if !st.Ready() {
			c.Message = st.Reason
		}
	}
	if len(c.Message) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(c.Message[cut]) {
			cut--
		}
		c.Message = c.Message[:cut] + "…"
	}
	return c
}

// A notifier is a controller source that requeues policies whose status
// changed in the set. Notifications before the controller starts are
// dropped: starting queues every policy anyway.
type notifier struct {
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[reconcile.Request]]
}

var _ source.Source = (*notifier)(nil)

// Start implements source.Source.
func (n *notifier) Start(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	n.queue.Store(&q)
	return nil
}

func (n *notifier) String() string { return "policy set status" }

// notify requeues namespace/name.
func (n *notifier) notify(namespace, name string) {
	if q := n.queue.Load(); q != nil {
		(*q).Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: namespace, Name: name}})
	}
}
