package v1alpha1_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/internal/kubetest"
)

var controlPlane kubetest.Shared

func TestMain(m *testing.M) {
	code := m.Run()
	controlPlane.Stop()
	os.Exit(code)
}

// TestAuthPolicyAdmissionAPIServer sends every manifest of admissionCases
// to a real kube-apiserver with the generated CRD installed (a server-side
// dry run, strict field validation as kubectl does by default): what the
// table accepts is accepted, and every mistake is rejected with a cause
// naming the field and saying what is wrong.
func TestAuthPolicyAdmissionAPIServer(t *testing.T) {
	env := controlPlane.Get(t)
	ctx := context.Background()
	// The table's manifests live in namespace shop.
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for name, tc := range admissionCases(t) {
		t.Run(name, func(t *testing.T) {
			var obj unstructured.Unstructured
			if err := yaml.UnmarshalStrict([]byte(tc.doc), &obj.Object); err != nil {
				t.Fatalf("test YAML: %v", err)
			}
			if obj.GetNamespace() == "" {
				obj.SetNamespace("shop")
			}
			err := env.Client.Create(ctx, &obj, client.DryRunAll, client.FieldValidation(metav1.FieldValidationStrict))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("the API server rejects a valid policy: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("the API server accepts the policy; want errors %v", tc.want)
			}
			causes, err := rejection(err)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !hasCause(causes, w) {
					t.Errorf("no cause at %s containing %q; got %s", w.field, w.contains, formatCauses(causes))
				}
			}
			if len(causes) != len(tc.want) {
				t.Errorf("%d causes, want %d: %s", len(causes), len(tc.want), formatCauses(causes))
			}
		})
	}
}

// rejection returns the causes of an admission rejection: the field causes
// of an Invalid status, or one cause made of the message of a strict
// decoding error (which names the unknown field in its text).
func rejection(err error) ([]metav1.StatusCause, error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return nil, fmt.Errorf("not an API status error: %w", err)
	}
	s := status.Status()
	switch {
	case apierrors.IsInvalid(err) && s.Details != nil:
		return s.Details.Causes, nil
	case apierrors.IsBadRequest(err) && strings.Contains(s.Message, "strict decoding error"):
		return []metav1.StatusCause{{Type: metav1.CauseTypeFieldValueInvalid, Message: s.Message}}, nil
	}
	return nil, fmt.Errorf("rejected for another reason than the policy: %w", err)
}

// hasCause reports whether a cause names w's field and says w's text (the
// API server, like the table, names an error about the whole object
// "<nil>"); an unknown field is named in the strict decoding message.
func hasCause(causes []metav1.StatusCause, w wantErr) bool {
	for _, c := range causes {
		switch {
		case w.contains == "unknown field":
			if c.Field == "" && strings.Contains(c.Message, fmt.Sprintf("unknown field %q", w.field)) {
				return true
			}
		case c.Field == w.field && strings.Contains(c.Message, w.contains):
			return true
		}
	}
	return false
}

func formatCauses(causes []metav1.StatusCause) string {
	var b strings.Builder
	for _, c := range causes {
		fmt.Fprintf(&b, "\n  %s: %s", c.Field, c.Message)
	}
	return b.String()
}
