package decision

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/jwt"
)

// TestTokenDenyTemplates checks the template of every token reason: 503
// with Retry-After for keys_unavailable, a bare challenge for a missing
// token, and for every other reason a 401 whose challenge carries
// error="invalid_token" and a description of the class that is a valid
// RFC 7230 quoted-string.
func TestTokenDenyTemplates(t *testing.T) {
	for _, r := range jwt.Reasons() {
		t.Run(string(r), func(t *testing.T) {
			d := unauthenticated(r)
			if d.Reason != string(r) || d.Allowed || d.Message == "" {
				t.Fatalf("template %+v", d)
			}
			switch r {
			case jwt.ReasonKeysUnavailable:
				if d.Status != http.StatusServiceUnavailable || d.Code != CodeUnavailable || len(d.ResponseHeaders) != 1 ||
					d.ResponseHeaders[0] != (Header{Name: "retry-after", Value: KeysRetryAfter}) {
					t.Fatalf("template %+v", d)
				}
				return
			case jwt.ReasonMissing:
				if d.ResponseHeaders[0].Value != `Bearer realm="tollgate"` {
					t.Fatalf("challenge %q", d.ResponseHeaders[0].Value)
				}
			default:
				desc := r.Description()
				want := `Bearer realm="tollgate", error="invalid_token", error_description="` + desc + `"`
				if d.ResponseHeaders[0].Value != want {
					t.Fatalf("challenge %q, want %q", d.ResponseHeaders[0].Value, want)
				}
				if desc == "" || strings.ContainsAny(desc, "\"\\") || strings.IndexFunc(desc, func(c rune) bool { return c < 0x20 || c > 0x7e }) >= 0 {
					t.Fatalf("description %q is not a plain quoted-string", desc)
				}
			}
			if d.Status != http.StatusUnauthorized || d.Code != CodeUnauthenticated || d.ResponseHeaders[0].Name != "www-authenticate" {
				t.Fatalf("template %+v", d)
			}
		})
	}
	if unauthenticated("no such reason") != unauthenticated(jwt.ReasonMalformed) {
		t.Fatal("an unknown reason does not fall back to malformed")
	}
}

// TestDenyTemplatesSetOnlyTheirAnswer: setDenial copies a template's
// status, code, reason, message, body and response headers, and nothing
// else; a template that set another field would lose it.
func TestDenyTemplatesSetOnlyTheirAnswer(t *testing.T) {
	copied := map[string]bool{"Status": true, "Code": true, "Reason": true, "Message": true, "body": true, "ResponseHeaders": true}
	templates := denialTemplates()
	if len(templates) < 12+len(jwt.Reasons()) {
		t.Fatalf("%d templates: the list misses some", len(templates))
	}
	for _, tmpl := range templates {
		v := reflect.ValueOf(tmpl).Elem()
		for i := range v.NumField() {
			if name := v.Type().Field(i).Name; !copied[name] && !v.Field(i).IsZero() {
				t.Errorf("template %s sets %s, which setDenial does not copy", tmpl.Reason, name)
			}
		}
		var d Decision
		d.setDenial(tmpl)
		if d.Status != tmpl.Status || d.Body() != tmpl.Body() || len(d.ResponseHeaders) != len(tmpl.ResponseHeaders) || d.Allowed {
			t.Errorf("setDenial(%s) = %+v", tmpl.Reason, d)
		}
	}
}
