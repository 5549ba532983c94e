package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsinstall "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
)

// The generated CRD and the sample, relative to this package.
const (
	crdFile    = "../../config/crd/bases/tollgate.dev_authpolicies.yaml"
	sampleFile = "../../config/samples/tollgate_v1alpha1_authpolicy.yaml"
)

// loadCRD reads the generated CRD the way the API server receives it on
// create: decoded into the internal apiextensions type with the v1 defaults
// applied, status reset and the storage version recorded (the CRD
// registry's PrepareForCreate).
func loadCRD(t *testing.T) *apiextensions.CustomResourceDefinition {
	t.Helper()
	data, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatalf("read generated CRD (run 'make manifests'): %v", err)
	}
	scheme := runtime.NewScheme()
	apiextensionsinstall.Install(scheme)
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("decode %s: %v", crdFile, err)
	}
	crd, ok := obj.(*apiextensions.CustomResourceDefinition)
	if !ok {
		t.Fatalf("decode %s: got %T, want a CustomResourceDefinition", crdFile, obj)
	}
	crd.Status = apiextensions.CustomResourceDefinitionStatus{}
	crd.Generation = 1
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			crd.Status.StoredVersions = append(crd.Status.StoredVersions, v.Name)
		}
	}
	return crd
}

// versionSchema returns the openAPIV3Schema the CRD declares for the
// AuthPolicy version of this package.
func versionSchema(t *testing.T, crd *apiextensions.CustomResourceDefinition) *apiextensions.JSONSchemaProps {
	t.Helper()
	version := v1alpha1.GroupVersion.Version
	if !slices.ContainsFunc(crd.Spec.Versions, func(v apiextensions.CustomResourceDefinitionVersion) bool {
		return v.Name == version && v.Served && v.Storage
	}) {
		t.Fatalf("CRD does not serve and store %s", version)
	}
	validation, err := apiextensions.GetSchemaForVersion(crd, version)
	if err != nil {
		t.Fatalf("schema for %s: %v", version, err)
	}
	if validation == nil || validation.OpenAPIV3Schema == nil {
		t.Fatalf("CRD has no openAPIV3Schema for %s", version)
	}
	return validation.OpenAPIV3Schema
}

func TestCRDIsAcceptedByAPIServer(t *testing.T) {
	crd := loadCRD(t)
	if crd.Spec.Group != v1alpha1.GroupVersion.Group || crd.Spec.Names.Kind != "AuthPolicy" || crd.Spec.Scope != apiextensions.NamespaceScoped {
		t.Fatalf("CRD is %s %s (%s), want namespaced AuthPolicy in %s", crd.Spec.Group, crd.Spec.Names.Kind, crd.Spec.Scope, v1alpha1.GroupVersion.Group)
	}
	// ValidateCustomResourceDefinition is what the API server runs on a CRD
	// create: structural schema, defaults, list types, and every
	// x-kubernetes-validations rule compiled with its estimated cost checked
	// against the per-rule and per-CRD limits.
	for _, fe := range crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd) {
		t.Errorf("the API server would reject the CRD: %v", fe)
	}
}

// The check above must be able to fail: the same validation rejects a rule
// that does not compile and one whose estimated cost exceeds the budget.
func TestCRDValidationCatchesBrokenRules(t *testing.T) {
	tests := map[string]struct {
		mutate func(spec *apiextensions.JSONSchemaProps)
		want   string
	}{
		"a rule naming a field the schema does not have": {
			mutate: func(spec *apiextensions.JSONSchemaProps) {
				jwt := spec.Properties["jwt"]
				jwt.XValidations = append(jwt.XValidations, apiextensions.ValidationRule{Rule: "self.issuers.size() > 0"})
				spec.Properties["jwt"] = jwt
			},
			want: "compilation failed",
		},
		"a quadratic rule over an unbounded list": {
			mutate: func(spec *apiextensions.JSONSchemaProps) {
				spec.Properties["canary"] = apiextensions.JSONSchemaProps{
					Type:         "array",
					Items:        &apiextensions.JSONSchemaPropsOrArray{Schema: &apiextensions.JSONSchemaProps{Type: "string"}},
					XValidations: apiextensions.ValidationRules{{Rule: "self.all(x, self.all(y, x.matches(y)))"}},
				}
			},
			want: "estimated rule cost exceeds budget",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			crd := loadCRD(t)
			spec := versionSchema(t, crd).Properties["spec"]
			tc.mutate(&spec)
			versionSchema(t, crd).Properties["spec"] = spec
			errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd)
			if !strings.Contains(errs.ToAggregate().Error(), tc.want) {
				t.Fatalf("errors %v, want one containing %q", errs, tc.want)
			}
		})
	}
}

// TestCRDRuleCosts compiles every x-kubernetes-validations rule of the CRD
// as the API server does, and reports each rule's estimated cost (worst-case
// cost of one evaluation times how often the schema lets it run) against the
// per-rule limit, and the total against the per-CRD limit.
func TestCRDRuleCosts(t *testing.T) {
	root := versionSchema(t, loadCRD(t))
	envSet := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	ctx := crdvalidation.RootCELContext(root)
	var total uint64
	rules := 0
	var walk func(c *crdvalidation.CELSchemaContext, s *apiextensions.JSONSchemaProps, path *field.Path)
	walk = func(c *crdvalidation.CELSchemaContext, s *apiextensions.JSONSchemaProps, path *field.Path) {
		if len(s.XValidations) > 0 {
			info, err := c.TypeInfo()
			if err != nil || info == nil {
				t.Fatalf("%s: no CEL type information (%v)", path, err)
			}
			results, err := cel.Compile(info.Schema, info.DeclType, celconfig.PerCallLimit, envSet, cel.NewExpressionsEnvLoader())
			if err != nil {
				t.Fatalf("%s: compile: %v", path, err)
			}
			for i, r := range results {
				rules++
				rulePath := path.Child("x-kubernetes-validations").Index(i)
				if r.Error != nil {
					t.Errorf("%s: %q does not compile: %v", rulePath, s.XValidations[i].Rule, r.Error)
					continue
				}
				cardinality := r.MaxCardinality
				if c.MaxCardinality != nil {
					cardinality = *c.MaxCardinality
				}
				cost := r.MaxCost * cardinality
				if cardinality != 0 && cost/cardinality != r.MaxCost {
					t.Errorf("%s: estimated cost overflows", rulePath)
					continue
				}
				total += cost
				t.Logf("%-70s cost %4d x %6d = %9d (%.3f%% of the per-rule limit)", rulePath, r.MaxCost, cardinality, cost, 100*float64(cost)/crdvalidation.StaticEstimatedCostLimit)
				if cost > crdvalidation.StaticEstimatedCostLimit {
					t.Errorf("%s: estimated cost %d exceeds the per-rule limit %d", rulePath, cost, crdvalidation.StaticEstimatedCostLimit)
				}
			}
		}
		names := make([]string, 0, len(s.Properties))
		for name := range s.Properties {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			prop := s.Properties[name]
			walk(c.ChildPropertyContext(&prop, name), &prop, path.Child("properties", name))
		}
		if s.Items != nil && s.Items.Schema != nil {
			walk(c.ChildItemsContext(s.Items.Schema), s.Items.Schema, path.Child("items"))
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
			walk(c.ChildAdditionalPropertiesContext(s.AdditionalProperties.Schema), s.AdditionalProperties.Schema, path.Child("additionalProperties"))
		}
	}
	walk(ctx, root, field.NewPath("openAPIV3Schema"))
	t.Logf("%d rules, estimated total cost %d (%.3f%% of the per-CRD limit %d)", rules, total, 100*float64(total)/crdvalidation.StaticEstimatedCRDCostLimit, crdvalidation.StaticEstimatedCRDCostLimit)
	if rules == 0 {
		t.Fatal("the CRD has no x-kubernetes-validations rules")
	}
	if total > crdvalidation.StaticEstimatedCRDCostLimit {
		t.Errorf("estimated total cost %d exceeds the per-CRD limit %d", total, crdvalidation.StaticEstimatedCRDCostLimit)
	}
}

// admission validates AuthPolicy objects as the API server does on create,
// from the generated CRD.
type admission struct {
	structural      *structuralschema.Structural
	schemaValidator apiservervalidation.SchemaValidator
	celValidator    *cel.Validator
	hasStatus       bool
}

func newAdmission(t *testing.T) *admission {
	t.Helper()
	crd := loadCRD(t)
	props := versionSchema(t, crd)
	// As the CRD handler does: a structural schema with pruned defaults, an
	// OpenAPI validator, and a CEL validator with the per-call cost limit.
	s, err := structuralschema.NewStructural(props)
	if err != nil {
		t.Fatalf("structural schema: %v", err)
	}
	s = s.DeepCopy()
	if err := structuraldefaulting.PruneDefaults(s); err != nil {
		t.Fatalf("prune defaults: %v", err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(props)
	if err != nil {
		t.Fatalf("schema validator: %v", err)
	}
	celValidator := cel.NewValidator(s, true, celconfig.PerCallLimit)
	if celValidator == nil {
		t.Fatal("the schema has no CEL rules")
	}
	hasStatus := false
	for _, v := range crd.Spec.Versions {
		if v.Name == v1alpha1.GroupVersion.Version && v.Subresources != nil && v.Subresources.Status != nil {
			hasStatus = true
		}
	}
	if crd.Spec.Subresources != nil && crd.Spec.Subresources.Status != nil {
		hasStatus = true
	}
	return &admission{structural: s, schemaValidator: validator, celValidator: celValidator, hasStatus: hasStatus}
}

// create decodes and validates one object: unknown fields are errors (kubectl's
// default, --validate=strict), then pruning, structural defaulting, dropping
// status (a status subresource), and the customresource strategy's Validate:
// OpenAPI schema, list-type invariants, then CEL with the per-object budget
// unless an earlier error blocks it. It returns the defaulted object and the
// CEL cost spent.
func (a *admission) create(t *testing.T, doc string) (map[string]any, field.ErrorList, int64) {
	t.Helper()
	data, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		t.Fatalf("test YAML: %v", err)
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		t.Fatalf("test YAML: %v", err)
	}
	var errs field.ErrorList
	if obj["apiVersion"] != v1alpha1.GroupVersion.String() || obj["kind"] != "AuthPolicy" {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), obj["apiVersion"], "must be "+v1alpha1.GroupVersion.String()+" AuthPolicy"))
		return obj, errs, 0
	}
	unknown := structuralpruning.PruneWithOptions(obj, a.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, p := range unknown {
		errs = append(errs, field.Invalid(field.NewPath(p), nil, "unknown field"))
	}
	if len(errs) > 0 {
		return obj, errs, 0
	}
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, a.structural)
	structuraldefaulting.Default(obj, a.structural)
	if a.hasStatus {
		delete(obj, "status")
	}

	ctx := context.Background()
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, a.schemaValidator)...)
	errs = append(errs, schemaobjectmeta.Validate(ctx, nil, obj, a.structural, false)...)
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, a.structural, obj)...)
	if blocked := blockingError(errs); blocked != nil {
		return obj, append(errs, blocked), 0
	}
	celErrs, remaining := a.celValidator.Validate(ctx, nil, a.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return obj, append(errs, celErrs...), celconfig.RuntimeCELCostBudget - remaining
}

// blockingError mirrors the customresource strategy: after these OpenAPI
// errors the API server does not run the CEL rules.
func blockingError(errs field.ErrorList) *field.Error {
	for _, fe := range errs {
		switch fe.Type {
		case field.ErrorTypeNotSupported, field.ErrorTypeRequired, field.ErrorTypeTooLong, field.ErrorTypeTooMany, field.ErrorTypeTypeInvalid:
			return field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation")
		}
	}
	return nil
}

// wantErr is one expected admission error: its exact field path and a
// substring of its message.
type wantErr struct{ field, contains string }

func (w wantErr) matches(fe *field.Error) bool {
	return fe.Field == w.field && strings.Contains(fe.Error(), w.contains)
}

const notChecked = "some validation rules were not checked"

// An admissionCase is one manifest and what admission says about it.
type admissionCase struct {
	doc string
	// want lists every error admission must report, and nothing else;
	// empty means the object is accepted.
	want []wantErr
}

// admissionCases is the table of manifests, each valid or with one schema
// or CEL mistake, that both the server-less admission check below and the
// real API server (TestAuthPolicyAdmissionAPIServer) must judge alike.
func admissionCases(t *testing.T) map[string]admissionCase {
	t.Helper()
	sample, err := os.ReadFile(sampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]admissionCase{
		"the sample policy is accepted": {doc: string(sample)},
		"a secretRef policy with HS256 is accepted": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: shared-secret, namespace: shop}
spec:
  hosts: [api.example.com, "*.example.com"]
  jwt:
    issuer: https://auth.example.com
    audiences: [https://api.example.com]
    secretRef: {name: auth-secret, key: jwt-secret}
    algorithms: [HS256]
    tokenFrom:
      - {header: authorization, prefix: "Bearer "}
      - {cookie: session-jwt}
      - {query: access_token}
  rules:
    - name: everything
      path: /api/**
`},
		"an anonymous-only policy without jwt is accepted": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: public, namespace: shop}
spec:
  pathPrefix: /public
  rules:
    - name: health
      methods: [GET, HEAD]
      path: /public/health
      anonymous: true
      limits:
        - {name: per-ip, requests: 10, period: 1s, by: ip}
`},
		"a discovery policy is accepted": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: oidc, namespace: shop}
spec:
  hosts: ["*.example.com"]
  mode: dryRun
  jwt:
    issuer: https://accounts.example.com
    discovery: true
    algorithms: [RS256, ES256, Ed25519]
    clockSkew: 5m
    forwardClaims: {x-user-id: sub}
  limits:
    - {name: per-user, requests: 1000000000, period: 744h, by: "claim:tenant"}
  rules:
    - name: own-files
      path: /files/{owner}/**
      owner: {path: owner, allowIf: {claim: role, values: [admin]}}
      limits:
        - name: per-header
          requests: 5
          period: 1.5m
          by: header:x-api-key
          tiers: {claim: plan, values: {gold: {requests: 50, period: 30s}}}
`},
		"discovery set to false next to jwksURI is one key source": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, jwksURI: https://auth.example.com/jwks, discovery: false}
  rules: [{name: r}]
`},

		"a policy without issuer and without betterAuth is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {jwksURI: https://auth.example.com/jwks}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.issuer", "issuer is required unless the betterAuth preset supplies it"}}},
		"two key sources (jwksURI and jwks) are rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, jwksURI: https://auth.example.com/jwks, jwks: '{"keys":[]}'}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt", "exactly one key source must be set"}}},
		"zero key sources are rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt", "exactly one key source must be set"}}},
		"discovery set to false alone is zero key sources": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: false}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt", "exactly one key source must be set"}}},
		"a period that is not a duration is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 1, period: forever, by: ip}]
  rules: [{name: r}]
`, want: []wantErr{
			{"spec.limits[0].period", "should match"},
			// The pattern error does not block CEL, whose duration() then fails.
			{"spec.limits[0].period", "type conversion error from 'string' to 'google.protobuf.Duration' evaluating rule: period must be between 1s and 744h"},
		}},
		"a period under 1s is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 1, period: 500ms, by: ip}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.limits[0].period", "period must be between 1s and 744h"}}},
		"a period over 744h is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      limits: [{name: l, requests: 1, period: 744h1s, by: ip}]
`, want: []wantErr{{"spec.rules[0].limits[0].period", "period must be between 1s and 744h"}}},
		"a clockSkew over 5m is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true, clockSkew: 10m}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.clockSkew", "clockSkew must be between 0s and 5m"}}},
		"requests 0 is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 0, period: 1m, by: ip}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.limits[0].requests", "should be greater than or equal to 1"}}},
		"an unknown counter key (by: planet) is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 1, period: 1m, by: planet}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.limits[0].by", "should match"}}},
		"an owner with both path and header is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      path: /users/{userId}
      owner: {path: userId, header: x-user-id}
`, want: []wantErr{{"spec.rules[0].owner", "exactly one of path, query or header must be set"}}},
		"an owner with no source is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      path: /users/{userId}
      owner: {claim: sub}
`, want: []wantErr{{"spec.rules[0].owner", "exactly one of path, query or header must be set"}}},
		"owner.path naming a variable the rule's path does not declare is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      path: /users/{id}/tasks
      owner: {path: userId}
`, want: []wantErr{{"spec.rules[0].owner.path", "owner.path must name a variable that the rule's path declares"}}},
		"owner.path naming only the start of a declared variable is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      path: /users/{userId}/tasks
      owner: {path: user}
`, want: []wantErr{{"spec.rules[0].owner.path", "owner.path must name a variable that the rule's path declares"}}},
		"owner.path on a rule without a path is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      owner: {path: userId}
`, want: []wantErr{{"spec.rules[0].owner.path", "owner.path must name a variable that the rule's path declares"}}},
		"an anonymous rule with an owner is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      anonymous: true
      owner: {query: user}
`, want: []wantErr{{"spec.rules[0].owner", "an anonymous rule cannot have an owner"}}},
		"HS256 without secretRef is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, jwksURI: https://auth.example.com/jwks, algorithms: [RS256, HS256]}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.algorithms", "HS256/384/512 are only allowed with secretRef"}}},
		"secretRef with RS256 is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, secretRef: {name: s, key: k}, algorithms: [RS256]}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.algorithms", "secretRef allows only HS256/384/512"}}},
		"a policy without jwt and a rule that is not anonymous is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  rules:
    - {name: health, path: /health, anonymous: true}
    - {name: private, path: /private}
`, want: []wantErr{{"spec", "jwt is required unless every rule is anonymous"}}},
		"an unknown method (get) is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules: [{name: r, methods: [get]}]
`, want: []wantErr{{"spec.rules[0].methods[0]", `Unsupported value: "get"`}, {"<nil>", notChecked}}},
		"duplicate rule names are rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  rules: [{name: r, anonymous: true}, {name: r, anonymous: true, path: /x}]
`, want: []wantErr{{"spec.rules[1]", "Duplicate value"}}},
		"duplicate hosts are rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  hosts: [api.example.com, api.example.com]
  rules: [{name: r, anonymous: true}]
`, want: []wantErr{{"spec.hosts[1]", "Duplicate value"}}},
		"an upper-case host is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  hosts: [API.example.com]
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules: [{name: r}]
`, want: []wantErr{{"spec.hosts[0]", "should match"}}},
		"a token source with both header and cookie is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt:
    issuer: https://auth.example.com
    discovery: true
    tokenFrom: [{header: authorization, cookie: session}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.tokenFrom[0]", "exactly one of header, cookie or query must be set"}}},
		"a token prefix without a header is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt:
    issuer: https://auth.example.com
    discovery: true
    tokenFrom: [{cookie: session, prefix: "Bearer "}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.tokenFrom[0].prefix", "prefix is only allowed with header"}}},
		"a burst on a limit and on a tier is accepted": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 100, period: 15m, burst: 10, by: ip}]
  rules:
    - name: r
      limits:
        - {name: u, requests: 1, period: 1s, burst: 1000, by: user, tiers: {claim: plan, values: {gold: {requests: 50, burst: 5}, free: {requests: 1}}}}
`},
		"burst 0 is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 1, period: 1m, burst: 0, by: ip}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.limits[0].burst", "should be greater than or equal to 1"}}},
		"a burst over 1000 times requests is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  limits: [{name: l, requests: 10, period: 1m, burst: 10001, by: ip}]
  rules: [{name: r}]
`, want: []wantErr{{"spec.limits[0].burst", "burst must be at most 1000 times requests"}}},
		"a tier with burst 0 is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      limits:
        - {name: l, requests: 1, period: 1m, by: user, tiers: {claim: plan, values: {free: {requests: 1, burst: 0}}}}
`, want: []wantErr{{"spec.rules[0].limits[0].tiers.values.free.burst", "should be greater than or equal to 1"}}},
		"a tier taking the limit's burst, over 1000 times its requests, is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      limits:
        - {name: l, requests: 100, period: 1m, burst: 2000, by: user, tiers: {claim: plan, values: {free: {requests: 1}}}}
`, want: []wantErr{{"spec.rules[0].limits[0].tiers", "a tier without a burst of its own takes the limit's burst"}}},
		"a tier with requests 0 is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      limits:
        - {name: l, requests: 1, period: 1m, by: user, tiers: {claim: plan, values: {free: {requests: 0}}}}
`, want: []wantErr{{"spec.rules[0].limits[0].tiers.values.free.requests", "should be greater than or equal to 1"}}},
		"mode audit is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  mode: audit
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules: [{name: r}]
`, want: []wantErr{{"spec.mode", `Unsupported value: "audit"`}, {"<nil>", notChecked}}},
		"an unknown field is rejected": {doc: `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true, jwksUri: https://auth.example.com/jwks}
  rules: [{name: r}]
`, want: []wantErr{{"spec.jwt.jwksUri", "unknown field"}}},
	}
}

func TestAuthPolicyAdmission(t *testing.T) {
	a := newAdmission(t)
	for name, tc := range admissionCases(t) {
		t.Run(name, func(t *testing.T) {
			obj, errs, _ := a.create(t, tc.doc)
			for _, fe := range errs {
				if !slices.ContainsFunc(tc.want, func(w wantErr) bool { return w.matches(fe) }) {
					t.Errorf("unexpected error: %v", fe)
				}
			}
			for _, w := range tc.want {
				if !slices.ContainsFunc(errs, w.matches) {
					t.Errorf("missing error at %s containing %q; got %v", w.field, w.contains, errs)
				}
			}

			// Policy files never see an API server: what admission rejects,
			// reading the same document as a policy file rejects too, and what
			// admission accepts, file and admitted object both compile.
			fileErr := compileFile(tc.doc)
			switch {
			case len(tc.want) > 0 && fileErr == nil:
				t.Errorf("admission rejects the policy but a policy file with it compiles")
			case len(tc.want) == 0 && fileErr != nil:
				t.Errorf("admission accepts the policy but a policy file with it does not compile: %v", fileErr)
			case len(tc.want) == 0:
				var ap v1alpha1.AuthPolicy
				if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj, &ap, true); err != nil {
					t.Fatalf("decode the admitted object: %v", err)
				}
				if _, err := compiler.Compile(&ap); err != nil {
					t.Errorf("the admitted (defaulted) policy does not compile: %v", err)
				}
			}
		})
	}
}

// compileFile reads doc as a policy file does and compiles its one policy.
func compileFile(doc string) error {
	docs, err := policyfile.Parse([]byte(doc))
	if err != nil {
		return err
	}
	if len(docs) != 1 {
		return fmt.Errorf("%d documents, want 1", len(docs))
	}
	if docs[0].Err != nil {
		return docs[0].Err
	}
	_, err = compiler.Compile(docs[0].Policy)
	return err
}

// TestAuthPolicyAdmissionDefaults checks that the schema's defaults are what
// the API server stores for a minimal policy.
func TestAuthPolicyAdmissionDefaults(t *testing.T) {
	a := newAdmission(t)
	obj, errs, _ := a.create(t, `
apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: p, namespace: shop}
spec:
  jwt: {issuer: https://auth.example.com, discovery: true}
  rules:
    - name: r
      path: /users/{userId}
      owner: {path: userId}
status:
  observedGeneration: 7
`)
	if len(errs) > 0 {
		t.Fatalf("admission rejects a minimal policy: %v", errs)
	}
	var ap v1alpha1.AuthPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj, &ap, true); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("pathPrefix=%q mode=%q owner.claim=%q status.observedGeneration=%d",
		ap.Spec.PathPrefix, ap.Spec.Mode, ap.Spec.Rules[0].Owner.Claim, ap.Status.ObservedGeneration)
	want := `pathPrefix="/" mode="enforce" owner.claim="sub" status.observedGeneration=0`
	if got != want {
		t.Errorf("defaulted object: %s, want %s", got, want)
	}
}

// TestAuthPolicyAdmissionLargePolicyFitsCostBudget validates a policy near
// the size the API server stores (etcd's 1.5 MiB request limit) and with
// every list at the schema's maximum where it matters for the rules' runtime
// cost, to prove a valid policy never runs out of the per-object CEL budget.
func TestAuthPolicyAdmissionLargePolicyFitsCostBudget(t *testing.T) {
	a := newAdmission(t)
	var b strings.Builder
	b.WriteString(`apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata: {name: big, namespace: shop}
spec:
  hosts: [`)
	for i := range 64 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "h%d.example.com", i)
	}
	b.WriteString(`]
  jwt:
    issuer: https://auth.example.com
    jwksURI: https://auth.example.com/jwks
    algorithms: [EdDSA, Ed25519, ES256, ES384, ES512, RS256, RS384, RS512, PS256, PS384, PS512]
    clockSkew: 4m59.999999999s
    tokenFrom:
`)
	for i := range 8 {
		fmt.Fprintf(&b, "      - {header: x-token-%d, prefix: \"Bearer \"}\n", i)
	}
	b.WriteString("  limits:\n")
	for i := range 16 {
		fmt.Fprintf(&b, "    - {name: p%d, requests: 10, period: 1h0m0.5s, by: ip}\n", i)
	}
	b.WriteString("  rules:\n")
	for r := range 256 {
		fmt.Fprintf(&b, "    - name: rule-%d\n      path: /api/v1/organizations/{org}/users/{userId%d}/tasks/**\n      owner: {path: userId%d}\n      limits:\n", r, r, r)
		for l := range 4 {
			fmt.Fprintf(&b, "        - {name: l%d, requests: 10, period: 15m, by: user, tiers: {claim: plan, values: {a: {requests: 1, period: 1h}, b: {requests: 2, period: 2h}}}}\n", l)
		}
	}
	doc := b.String()
	if len(doc) > 1536*1024 {
		t.Fatalf("test policy is %d bytes, over etcd's limit", len(doc))
	}
	_, errs, cost := a.create(t, doc)
	for _, fe := range errs {
		t.Errorf("admission rejects a large valid policy (%d bytes): %v", len(doc), fe)
	}
	if cost <= 0 {
		t.Errorf("the CEL rules cost nothing on a %d-byte policy: were they run?", len(doc))
	}
	t.Logf("%d-byte policy: CEL runtime cost %d of the per-object budget %d (%.1f%%)", len(doc), cost, celconfig.RuntimeCELCostBudget, 100*float64(cost)/celconfig.RuntimeCELCostBudget)
}
