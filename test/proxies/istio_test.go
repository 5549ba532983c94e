package proxies_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/internal/deploy"
)

// The Istio examples are read with istio.io/api, the types istiod itself
// reads mesh config and AuthorizationPolicy specs into. IstioOperator is no
// longer part of istio.io/api (it lives in istio/istio, too large a module
// for a test), so its envelope is checked by a strict local struct and its
// meshConfig by MeshConfig, like the other forms.

// istioEnvelope is the Kubernetes part of an Istio resource; Spec is read
// strictly into the istio.io/api type afterwards.
type istioEnvelope struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
}

func TestIstioMeshConfig(t *testing.T) {
	fragment, err := parseMeshConfig(readExample(t, "config/istio/meshconfig.yaml"))
	if err != nil {
		t.Fatalf("meshconfig.yaml: %v", err)
	}

	var p *meshv1alpha1.MeshConfig_ExtensionProvider
	for _, x := range fragment.GetExtensionProviders() {
		if x.GetName() == "tollgate" {
			p = x
		}
	}
	if p == nil || len(fragment.GetExtensionProviders()) != 1 {
		t.Fatalf("want exactly one extension provider, named tollgate; got %v", fragment.GetExtensionProviders())
	}
	g := p.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("provider tollgate: want envoyExtAuthzGrpc, got %v", p.GetProvider())
	}
	assertServicePort(t, "envoyExtAuthzGrpc", g.GetService(), g.GetPort(), deploy.PortGRPC)
	if g.GetFailOpen() {
		t.Error("failOpen is true: a tollgate outage would let every request through")
	}
	if g.GetStatusOnError() != "503" {
		t.Errorf("statusOnError %q, want 503", g.GetStatusOnError())
	}
	if d := g.GetTimeout(); d == nil || d.AsDuration() <= 0 {
		t.Error("no timeout")
	}
	if g.GetIncludeRequestBodyInCheck() != nil {
		t.Error("includeRequestBodyInCheck is set; tollgate does not read bodies")
	}
	if got := fragment.GetPathNormalization().GetNormalization(); got != meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES {
		t.Errorf("pathNormalization %v, want MERGE_SLASHES: tollgate denies `//`, `..` and encoded unreserved characters it is sent", got)
	}

	t.Run("the IstioOperator overlay carries the same meshConfig", func(t *testing.T) {
		var op struct {
			APIVersion string             `json:"apiVersion"`
			Kind       string             `json:"kind"`
			Metadata   *metav1.ObjectMeta `json:"metadata,omitempty"`
			Spec       struct {
				MeshConfig json.RawMessage `json:"meshConfig"`
			} `json:"spec"`
		}
		if err := yaml.UnmarshalStrict(readExample(t, "config/istio/istio-operator.yaml"), &op); err != nil {
			t.Fatalf("istio-operator.yaml: %v", err)
		}
		if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
			t.Errorf("%s/%s, want install.istio.io/v1alpha1 IstioOperator", op.APIVersion, op.Kind)
		}
		assertSameMeshConfig(t, op.Spec.MeshConfig, fragment)
	})
	t.Run("the istiod Helm values carry the same meshConfig", func(t *testing.T) {
		var values struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		}
		if err := yaml.UnmarshalStrict(readExample(t, "config/istio/istiod-values.yaml"), &values); err != nil {
			t.Fatalf("istiod-values.yaml: %v", err)
		}
		assertSameMeshConfig(t, values.MeshConfig, fragment)
	})
}

func TestIstioAuthorizationPolicy(t *testing.T) {
	mesh, err := parseMeshConfig(readExample(t, "config/istio/meshconfig.yaml"))
	if err != nil {
		t.Fatalf("meshconfig.yaml: %v", err)
	}
	ap, env, err := parseAuthorizationPolicy(readExample(t, "config/istio/authorization-policy.yaml"))
	if err != nil {
		t.Fatalf("authorization-policy.yaml: %v", err)
	}
	if env.APIVersion != "security.istio.io/v1" || env.Kind != "AuthorizationPolicy" {
		t.Errorf("%s/%s, want security.istio.io/v1 AuthorizationPolicy", env.APIVersion, env.Kind)
	}
	if env.Metadata.Name == "" || env.Metadata.Namespace == "" {
		t.Errorf("metadata %+v: want a name and the workload's namespace", env.Metadata)
	}
	if ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("action %v, want CUSTOM", ap.GetAction())
	}
	provider := ap.GetProvider().GetName()
	found := false
	for _, p := range mesh.GetExtensionProviders() {
		found = found || p.GetName() == provider
	}
	if !found {
		t.Errorf("provider %q is not an extension provider of meshconfig.yaml", provider)
	}
	if len(ap.GetSelector().GetMatchLabels()) == 0 {
		t.Error("no selector: the policy would apply to every workload of the namespace")
	}
	if len(ap.GetRules()) != 1 || !proto.Equal(ap.GetRules()[0], &securityv1beta1.Rule{}) {
		t.Errorf("rules %v: want one empty rule, so that every request is checked", ap.GetRules())
	}
}

// TestIstioStrictParse shows that the parsers refuse what istiod would, so
// that the tests above mean something.
func TestIstioStrictParse(t *testing.T) {
	tests := map[string]struct {
		file, from, to, want string
		parse                func([]byte) error
	}{
		"a misspelt mesh field": {
			file: "config/istio/meshconfig.yaml", from: "failOpen: false", to: "failopen: false", want: "unknown field",
			parse: func(b []byte) error { _, err := parseMeshConfig(b); return err },
		},
		"an unknown normalization": {
			file: "config/istio/meshconfig.yaml", from: "normalization: MERGE_SLASHES", to: "normalization: MERGE", want: "invalid value for enum",
			parse: func(b []byte) error { _, err := parseMeshConfig(b); return err },
		},
		"a duplicate key": {
			file: "config/istio/meshconfig.yaml", from: "port: 50051", to: "port: 50051\n      port: 5001", want: "already set",
			parse: func(b []byte) error { _, err := parseMeshConfig(b); return err },
		},
		"a misspelt policy field": {
			file: "config/istio/authorization-policy.yaml", from: "action: CUSTOM", to: "action: CUSTOM\n  providers: {}", want: "unknown field",
			parse: func(b []byte) error { _, _, err := parseAuthorizationPolicy(b); return err },
		},
		"an unknown action": {
			file: "config/istio/authorization-policy.yaml", from: "action: CUSTOM", to: "action: EXTERNAL", want: "invalid value for enum",
			parse: func(b []byte) error { _, _, err := parseAuthorizationPolicy(b); return err },
		},
		"a misspelt metadata field": {
			file: "config/istio/authorization-policy.yaml", from: "namespace: shop", to: "namespace: shop\n  label: {}", want: "unknown field",
			parse: func(b []byte) error { _, _, err := parseAuthorizationPolicy(b); return err },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			good := string(readExample(t, tc.file))
			if err := tc.parse([]byte(good)); err != nil {
				t.Fatalf("the example itself: %v", err)
			}
			if !strings.Contains(good, tc.from) {
				t.Fatalf("%s lacks %q", tc.file, tc.from)
			}
			err := tc.parse([]byte(strings.Replace(good, tc.from, tc.to, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %s", err, tc.want)
			}
		})
	}
}

// parseMeshConfig reads mesh config YAML strictly into MeshConfig.
func parseMeshConfig(y []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	return unmarshalMeshConfig(js)
}

func unmarshalMeshConfig(js []byte) (*meshv1alpha1.MeshConfig, error) {
	var m meshv1alpha1.MeshConfig
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, &m); err != nil {
		return nil, fmt.Errorf("meshConfig: %w", err)
	}
	return &m, nil
}

// parseAuthorizationPolicy reads an AuthorizationPolicy resource strictly:
// its envelope and metadata as Kubernetes does, its spec into istio.io/api.
func parseAuthorizationPolicy(y []byte) (*securityv1beta1.AuthorizationPolicy, *istioEnvelope, error) {
	var env istioEnvelope
	if err := yaml.UnmarshalStrict(y, &env); err != nil {
		return nil, nil, fmt.Errorf("resource: %w", err)
	}
	var ap securityv1beta1.AuthorizationPolicy
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(env.Spec, &ap); err != nil {
		return nil, nil, fmt.Errorf("spec: %w", err)
	}
	return &ap, &env, nil
}

func assertSameMeshConfig(t *testing.T, js json.RawMessage, want *meshv1alpha1.MeshConfig) {
	t.Helper()
	if len(js) == 0 {
		t.Fatal("no meshConfig")
	}
	got, err := unmarshalMeshConfig(js)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("meshConfig differs from meshconfig.yaml:\n got %v\nwant %v", got, want)
	}
}
