package policyset_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	pt "github.com/tollgate-dev/tollgate/pkg/policy/policytest"
)

// TestSameSecondIsDecidedByArrival: creationTimestamp has whole seconds, so
// two objects created in the same second tie on it. The one applied first
// (the watch delivers objects in the order they were created) is the older:
// it owns the host and wins the host+pathPrefix tie, whatever the names'
// order; an object whose stored status is already Conflict (a restart, whose
// initial list comes in name order) is the newer of a tie.
func TestSameSecondIsDecidedByArrival(t *testing.T) {
	var conflicted pt.Modifier = func(ap *v1alpha1.AuthPolicy) {
		meta.SetStatusCondition(&ap.Status.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonConflict, Message: "earlier decision",
		})
	}
	for name, tc := range map[string]struct {
		first, second          func(h *harness) *v1alpha1.AuthPolicy
		winner, loser, message string
	}{
		"host ownership: zshop first, aevil second": {
			first: func(h *harness) *v1alpha1.AuthPolicy {
				return h.policy("zshop", "tasks", 1, "api.example.test", "/api")
			},
			second: func(h *harness) *v1alpha1.AuthPolicy {
				return h.policy("aevil", "grab", 1, "api.example.test", "/api/users")
			},
			winner: "zshop/tasks", loser: "aevil/grab", message: "belongs to namespace zshop",
		},
		"host+pathPrefix tie: z-first first, a-second second": {
			first: func(h *harness) *v1alpha1.AuthPolicy {
				return h.policy("shop", "z-first", 1, "api.example.test", "/api")
			},
			second: func(h *harness) *v1alpha1.AuthPolicy {
				return h.policy("shop", "a-second", 1, "api.example.test", "/api")
			},
			winner: "shop/z-first", loser: "shop/a-second", message: "z-first",
		},
		"a restart: the stored Conflict is the newer, listed first": {
			first: func(h *harness) *v1alpha1.AuthPolicy {
				return h.policy("aevil", "grab", 1, "api.example.test", "/api/users", conflicted)
			},
			second: func(h *harness) *v1alpha1.AuthPolicy {
				return h.policy("zshop", "tasks", 1, "api.example.test", "/api")
			},
			winner: "zshop/tasks", loser: "aevil/grab", message: "belongs to namespace zshop",
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.set.Apply(tc.first(h))
			h.set.Apply(tc.second(h))
			h.flush()
			h.expectStatus(tc.winner, v1alpha1.ReasonAccepted, true)
			h.expectStatus(tc.loser, v1alpha1.ReasonConflict, false, tc.message)
			// An update (a resync, a label) keeps the order.
			h.set.Apply(tc.second(h))
			h.set.Apply(tc.first(h))
			h.flush()
			h.expectStatus(tc.winner, v1alpha1.ReasonAccepted, true)
		})
	}
}
