package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Mode values of AuthPolicySpec.Mode.
const (
	ModeEnforce = "enforce"
	ModeDryRun  = "dryRun"
)

// Condition types and reasons written to AuthPolicyStatus.Conditions.
const (
	ConditionReady = "Ready"

	ReasonAccepted        = "Accepted"
	ReasonInvalidSpec     = "InvalidSpec"
	ReasonSecretNotFound  = "SecretNotFound"
	ReasonJWKSUnavailable = "JWKSUnavailable"
	ReasonConflict        = "Conflict"
)

// AuthPolicySpec declares how requests for a set of hosts and a path prefix
// are authenticated, isolated per user and rate limited.
// +kubebuilder:validation:XValidation:rule="has(self.jwt) || self.rules.all(r, has(r.anonymous) && r.anonymous)",message="jwt is required unless every rule is anonymous"
type AuthPolicySpec struct {
	// Hosts are the :authority values (port stripped) this policy governs:
	// exact names or "*." wildcards. Empty means any host.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +listType=set
	Hosts []string `json:"hosts,omitempty"`

	// PathPrefix restricts the policy to paths under this prefix.
	// +optional
	// +kubebuilder:default="/"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	PathPrefix string `json:"pathPrefix,omitempty"`

	// JWT says how callers' tokens are verified.
	// +optional
	JWT *JWT `json:"jwt,omitempty"`

	// Mode is enforce (deny what fails) or dryRun (decide, log and count,
	// but allow).
	// +optional
	// +kubebuilder:default=enforce
	// +kubebuilder:validation:Enum=enforce;dryRun
	Mode string `json:"mode,omitempty"`

	// Limits apply to every rule of this policy.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Limits []Limit `json:"limits,omitempty"`

	// Rules are tried in order; the first that matches the request decides.
	// A request that matches the policy but none of its rules is denied.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +listType=map
	// +listMapKey=name
	Rules []Rule `json:"rules"`
}

// JWT configures token verification. Exactly one key source is set:
// jwksURI, jwks, secretRef, discovery or betterAuth.
// +kubebuilder:validation:XValidation:rule="has(self.issuer) || has(self.betterAuth)",message="issuer is required unless the betterAuth preset supplies it",fieldPath=".issuer"
// +kubebuilder:validation:XValidation:rule="[has(self.jwksURI), has(self.jwks), has(self.secretRef), has(self.discovery) && self.discovery, has(self.betterAuth)].filter(x, x).size() == 1",message="exactly one key source must be set: jwksURI, jwks, secretRef, discovery or betterAuth"
// +kubebuilder:validation:XValidation:rule="!has(self.algorithms) || has(self.secretRef) || self.algorithms.all(a, !a.startsWith('HS'))",message="HS256/384/512 are only allowed with secretRef",fieldPath=".algorithms"
// +kubebuilder:validation:XValidation:rule="!has(self.algorithms) || !has(self.secretRef) || self.algorithms.all(a, a.startsWith('HS'))",message="secretRef allows only HS256/384/512",fieldPath=".algorithms"
type JWT struct {
	// Issuer must equal the token's "iss" claim exactly.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Issuer string `json:"issuer,omitempty"`

	// Audiences: the token's "aud" must contain one of them. Empty means
	// "aud" is not checked.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=1024
	Audiences []string `json:"audiences,omitempty"`

	// JWKSURI is a remote JWK Set, fetched and refreshed.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	JWKSURI string `json:"jwksURI,omitempty"`

	// JWKS is an inline JWK Set document (air-gapped clusters, tests).
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	JWKS string `json:"jwks,omitempty"`

	// SecretRef names a Secret key holding an HS256/384/512 shared secret.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`

	// Discovery reads jwks_uri from <issuer>/.well-known/openid-configuration.
	// +optional
	Discovery bool `json:"discovery,omitempty"`

	// BetterAuth is a preset for Better Auth's jwt plugin: issuer and
	// audience are the base URL, keys come from <baseURL>/api/auth/jwks.
	// +optional
	BetterAuth *BetterAuth `json:"betterAuth,omitempty"`

	// Algorithms allowed. Default: the asymmetric ones, or HS256 with
	// secretRef. "Ed25519" is accepted as EdDSA.
	// +optional
	// +kubebuilder:validation:MaxItems=14
	// +kubebuilder:validation:items:Enum=EdDSA;Ed25519;ES256;ES384;ES512;RS256;RS384;RS512;PS256;PS384;PS512;HS256;HS384;HS512
	Algorithms []string `json:"algorithms,omitempty"`

	// ClockSkew tolerated on exp, nbf and iat. Default 30s, at most 5m.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('5m')",message="clockSkew must be between 0s and 5m"
	ClockSkew string `json:"clockSkew,omitempty"`

	// TokenFrom lists where the token is looked for, in order. Default:
	// the authorization header with the "Bearer " prefix.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	TokenFrom []TokenSource `json:"tokenFrom,omitempty"`

	// ForwardClaims maps upstream request header names to claim names.
	// Client-sent copies of these headers are always removed.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	ForwardClaims map[string]string `json:"forwardClaims,omitempty"`

	// StripToken removes the token header before the request goes upstream.
	// +optional
	StripToken bool `json:"stripToken,omitempty"`
}

// SecretKeyRef names one key of a Secret in the policy's namespace.
type SecretKeyRef struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// BetterAuth is the Better Auth preset.
type BetterAuth struct {
	// BaseURL of the Better Auth server, e.g. https://app.example.com.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	BaseURL string `json:"baseURL"`
}

// TokenSource is one place to read a token from: a header (with an
// optional prefix that is stripped), a cookie or a query parameter.
// +kubebuilder:validation:XValidation:rule="[has(self.header), has(self.cookie), has(self.query)].filter(x, x).size() == 1",message="exactly one of header, cookie or query must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.prefix) || has(self.header)",message="prefix is only allowed with header",fieldPath=".prefix"
type TokenSource struct {
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Header string `json:"header,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Prefix string `json:"prefix,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Cookie string `json:"cookie,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9._~-]+$`
	Query string `json:"query,omitempty"`
}

// Rule matches requests by method and path template and says what they
// need: a token (unless anonymous), ownership, and quota.
// +kubebuilder:validation:XValidation:rule="!has(self.owner) || !has(self.owner.path) || (has(self.path) && self.path.contains('{' + self.owner.path + '}'))",message="owner.path must name a variable that the rule's path declares",fieldPath=".owner.path"
// +kubebuilder:validation:XValidation:rule="!(has(self.anonymous) && self.anonymous && has(self.owner))",message="an anonymous rule cannot have an owner",fieldPath=".owner"
type Rule struct {
	// Name identifies the rule in decisions, logs and metrics.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Name string `json:"name"`

	// Methods matched; empty means any.
	// +optional
	// +kubebuilder:validation:MaxItems=9
	// +kubebuilder:validation:items:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS;CONNECT;TRACE
	Methods []string `json:"methods,omitempty"`

	// Path is a template: literal segments, {name} (one segment, captured),
	// * (one segment) and ** (zero or more trailing segments, last only).
	// Empty means any path under the policy's prefix.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path,omitempty"`

	// Owner enforces user isolation.
	// +optional
	Owner *Owner `json:"owner,omitempty"`

	// Anonymous rules need no token (limits by ip still apply).
	// +optional
	Anonymous bool `json:"anonymous,omitempty"`

	// Limits apply to this rule, in addition to the policy's limits.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	Limits []Limit `json:"limits,omitempty"`
}

// Owner requires that a value naming a user equals a claim of the token.
// +kubebuilder:validation:XValidation:rule="[has(self.path), has(self.query), has(self.header)].filter(x, x).size() == 1",message="exactly one of path, query or header must be set"
type Owner struct {
	// Claim compared with the owner value. Default "sub".
	// +optional
	// +kubebuilder:default=sub
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Claim string `json:"claim,omitempty"`
	// Path names a {variable} of the rule's path template.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Path string `json:"path,omitempty"`
	// Query names a query parameter.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Query string `json:"query,omitempty"`
	// Header names a request header.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`
	Header string `json:"header,omitempty"`
	// AllowIf bypasses the check when the token's claim has one of values.
	// +optional
	AllowIf *ClaimValues `json:"allowIf,omitempty"`
}

// ClaimValues matches a claim against a set of values. A claim holding an
// array matches when any element does.
type ClaimValues struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Claim string `json:"claim"`
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	Values []string `json:"values"`
}

// Limit allows at most Burst (default Requests) requests at once, refilled
// smoothly at Requests per Period, counted per key By. A fresh key may
// therefore see up to Burst + Requests requests in its first Period.
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst <= self.requests * 1000",message="burst must be at most 1000 times requests",fieldPath=".burst"
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || !has(self.tiers) || self.tiers.values.all(k, has(self.tiers.values[k].burst) || self.burst <= self.tiers.values[k].requests * 1000)",message="a tier without a burst of its own takes the limit's burst, which must be at most 1000 times the tier's requests",fieldPath=".tiers"
type Limit struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Name string `json:"name"`

	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Requests int64 `json:"requests"`

	// Period over which Requests refill, a Go duration between 1s and 744h.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('744h')",message="period must be between 1s and 744h"
	Period string `json:"period"`

	// Burst is the most requests allowed at once: a full counter allows
	// Burst requests together, then refills at Requests per Period. Unset
	// means Requests. At most 1000 times Requests.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Burst *int64 `json:"burst,omitempty"`

	// By is the counter key: user, ip, user+ip, claim:<name> or header:<name>.
	// +kubebuilder:validation:MaxLength=263
	// +kubebuilder:validation:Pattern=`^(user|ip|user\+ip|claim:[A-Za-z0-9_.:/-]+|header:[A-Za-z0-9!#$%&'*+.^_|~-]+)$`
	By string `json:"by"`

	// Tiers change the limit (never the counter) by a claim's value.
	// +optional
	Tiers *Tiers `json:"tiers,omitempty"`
}

// Tiers selects a limit by the value of a claim.
type Tiers struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Claim string `json:"claim"`
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=32
	Values map[string]Tier `json:"values"`
}

// Tier overrides a limit's requests and, optionally, its burst and period.
// +kubebuilder:validation:XValidation:rule="!has(self.burst) || self.burst <= self.requests * 1000",message="burst must be at most 1000 times requests",fieldPath=".burst"
type Tier struct {
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Requests int64 `json:"requests"`
	// Burst of this tier. Unset means the limit's burst when the limit
	// sets one, else this tier's Requests.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000000
	Burst *int64 `json:"burst,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('744h')",message="period must be between 1s and 744h"
	Period string `json:"period,omitempty"`
}

// AuthPolicyStatus is the observed state of an AuthPolicy.
type AuthPolicyStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready is True when the policy is compiled and serving.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AuthPolicy declares authentication, user isolation and quotas for the
// requests that Envoy sends to tollgate.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ap;authpol,categories=tollgate
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AuthPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AuthPolicySpec   `json:"spec"`
	Status AuthPolicyStatus `json:"status,omitempty"`
}

// AuthPolicyList is a list of AuthPolicy.
// +kubebuilder:object:root=true
type AuthPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AuthPolicy{}, &AuthPolicyList{})
}
