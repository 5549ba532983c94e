package proxies_test

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
)

// samplePolicy is the AuthPolicy users start from; its forwardClaims are
// the identity headers every example must handle.
const samplePolicy = "config/samples/tollgate_v1alpha1_authpolicy.yaml"

// TestExamplesHandleEveryForwardedClaim checks that each proxy example
// that must name identity headers one by one (Envoy's HTTP mode, nginx,
// Caddy) names every forwardClaims header of the sample policy: a header
// left out would reach the upstream with the client's value. The runtime
// tests prove the mechanism for two headers; this keeps the lists
// complete.
func TestExamplesHandleEveryForwardedClaim(t *testing.T) {
	var p v1alpha1.AuthPolicy
	if err := yaml.UnmarshalStrict(readExample(t, samplePolicy), &p); err != nil {
		t.Fatalf("%s: %v", samplePolicy, err)
	}
	var headers []string
	for h := range p.Spec.JWT.ForwardClaims {
		headers = append(headers, strings.ToLower(h))
	}
	sort.Strings(headers)
	if len(headers) == 0 {
		t.Fatalf("%s forwards no claims: nothing to check", samplePolicy)
	}

	envoy := loadEnvoyExample(t, "config/envoy/envoy-http.yaml")
	nginx := string(readExample(t, nginxExample))
	caddy := string(readExample(t, caddyExample))
	for _, h := range headers {
		t.Run(h, func(t *testing.T) {
			if !anyMatch(t, envoy.authz.GetHttpService().GetAuthorizationResponse().GetAllowedUpstreamHeaders(), h) {
				t.Error("envoy-http.yaml: not in allowed_upstream_headers")
			}
			q := regexp.QuoteMeta(h)
			// nginx: the variable auth_request_set fills from tollgate's
			// header must be what proxy_set_header sends upstream.
			set := regexp.MustCompile(`(?m)^\s*auth_request_set \$(\w+) \$upstream_http_` + regexp.QuoteMeta(strings.ReplaceAll(h, "-", "_")) + `;`).FindStringSubmatch(nginx)
			if set == nil {
				t.Errorf("%s: no auth_request_set from tollgate's %s", nginxExample, h)
			} else if !regexp.MustCompile(`(?im)^\s*proxy_set_header ` + q + ` \$` + set[1] + `;`).MatchString(nginx) {
				t.Errorf("%s: no proxy_set_header %s $%s", nginxExample, h, set[1])
			}
			for _, c := range []struct{ what, re string }{
				{"request_header -" + h + " (before forward_auth)", `(?im)^\s*request_header -` + q + `\s*$`},
				{"copy_headers " + h, `(?im)^\s*copy_headers .*\b` + q + `\b`},
				{"a literal-placeholder cleanup for " + h, `(?im)^\s*@\w+ header_regexp ` + q + ` `},
			} {
				if !regexp.MustCompile(c.re).MatchString(caddy) {
					t.Errorf("%s: no %s", caddyExample, c.what)
				}
			}
		})
	}
}
