package policyfile_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/policyfile"
)

// header is the start of every document below: lines 1 to 6.
const header = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: api
  namespace: shop
spec:
`

// want is one expected problem: its field, line and a part of its message.
type want struct {
	field string
	line  int
	msg   string
}

func TestLoadReportsEveryDecodeMistake(t *testing.T) {
	tests := map[string]struct {
		spec string // from line 7
		want []want
	}{
		"a word where a number goes, and a second mistake in the same document": {
			spec: `  jwt:
    issuer: https://auth.example.com
    jwksURI: https://auth.example.com/jwks
  limits:
    - name: per-user
      requests: "one hundred"
      period: forever
      by: user
  rules:
    - name: all
`,
			want: []want{
				{"spec.limits[0].requests", 12, `must be a whole number, not the string "one hundred"`},
				{"spec.limits[0].period", 13, `Invalid value: "forever"`},
			},
		},
		"two wrong types in one document": {
			spec: `  pathPrefix: 42
  rules:
    - name: all
      anonymous: "yes"
      methods: GET
`,
			want: []want{
				{"spec.pathPrefix", 7, "must be a string, not the number 42"},
				{"spec.rules[0].anonymous", 10, `must be true or false, not the string "yes"`},
				{"spec.rules[0].methods", 11, `must be a list, not the string "GET"`},
				// The compiler sees the rest: a rule that is not anonymous.
				{"spec.jwt", 6, "jwt is required unless every rule is anonymous"},
			},
		},
		"an unknown field names the field meant": {
			spec: `  rules:
    - name: health
      anonymus: true
`,
			want: []want{
				{"spec.rules[0].anonymus", 9, `unknown field "anonymus" (did you mean "anonymous"?)`},
				// What the compiler says of the rest: without the field,
				// the rule is not anonymous.
				{"spec.jwt", 6, "jwt is required unless every rule is anonymous"},
			},
		},
		"a field in the wrong case": {
			spec: `  PathPrefix: /api
  rules: [{name: all, anonymous: true}]
`,
			want: []want{{"spec.PathPrefix", 7, `unknown field "PathPrefix" (did you mean "pathPrefix"?)`}},
		},
		"an unknown field with none near lists the fields there": {
			spec: `  limits:
    - {name: per-ip, requests: 10, period: 1m, by: ip, colour: red}
  rules: [{name: all, anonymous: true}]
`,
			want: []want{{"spec.limits[0].colour", 8, `unknown field "colour" (fields here: burst, by, name, period, requests, tiers)`}},
		},
		"a duplicate field": {
			spec: `  pathPrefix: /a
  pathPrefix: /b
  rules: [{name: all, anonymous: true}]
`,
			want: []want{{"spec.pathPrefix", 8, `duplicate field "pathPrefix" (first on line 7)`}},
		},
		"a list where an object goes": {
			spec: `  jwt: [issuer]
  rules: [{name: all, anonymous: true}]
`,
			want: []want{{"spec.jwt", 7, "must be an object (field: value), not a list"}},
		},
		"a map value of the wrong type": {
			spec: `  jwt:
    issuer: https://auth.example.com
    jwksURI: https://auth.example.com/jwks
    forwardClaims:
      x-user-id: [sub]
  rules: [{name: all}]
`,
			want: []want{{"spec.jwt.forwardClaims[x-user-id]", 11, "must be a string, not a list"}},
		},
		"YAML that does not parse": {
			spec: `  rules:
    - name: x
   path: /y
`,
			// The parser names the line where it found no key.
			want: []want{{"", 8, "invalid YAML: did not find expected key"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "p.yaml", header+tc.spec)
			_, problems := load(t, path)
			var got []want
			for _, p := range problems {
				if !strings.HasPrefix(p.String(), path+":") {
					t.Errorf("%q does not start with the file and line", p)
				}
				got = append(got, want{p.Field, p.Line, p.Message})
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d: %+v", lines(problems), len(tc.want), tc.want)
			}
			for _, w := range tc.want {
				found := false
				for _, g := range got {
					found = found || g.field == w.field && g.line == w.line && strings.Contains(g.msg, w.msg)
				}
				if !found {
					t.Errorf("no problem %+v in:\n%s", w, lines(problems))
				}
			}
		})
	}
}

func lines(problems []policyfile.Problem) string {
	var b strings.Builder
	for _, p := range problems {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

// TestDecodeLinesCountFromTheFile checks that lines are those of the file,
// not of the document, in a multi-document file.
func TestDecodeLinesCountFromTheFile(t *testing.T) {
	before := "# a comment\n---\n" + validPolicy + "---\n---\n" + header
	stream := before + "  pathPrefix: [a]\n  rules: [{name: all, anonymous: true}]\n"
	line := strings.Count(before, "\n") + 1
	docs, err := policyfile.Parse([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Err != nil {
		t.Fatalf("docs = %+v", docs)
	}
	var de *policyfile.DecodeError
	if !errors.As(docs[1].Err, &de) {
		t.Fatalf("second document: %v, want a DecodeError", docs[1].Err)
	}
	if len(de.Errs) != 1 || de.Errs[0].Line != line || de.Errs[0].Field != "spec.pathPrefix" {
		t.Errorf("errors %#v, want spec.pathPrefix on line %d", de.Errs, line)
	}
	if docs[1].Object() != "shop/api" {
		t.Errorf("the document's name is lost: %s", docs[1].Object())
	}
}

// TestAddLines checks that the compiler's findings, which come with field
// paths only, get the line of the field, or of the nearest field above it
// that is written.
func TestAddLines(t *testing.T) {
	const file = "testdata/invalid/many-mistakes.yaml"
	_, problems := load(t, file)
	problems = policyfile.AddLines(problems)
	got := map[string]int{}
	for _, p := range problems {
		got[p.Field] = p.Line
	}
	wantLines := map[string]int{
		"spec.jwt":                 8,
		"spec.limits[0].requests":  14,
		"spec.limits[0].period":    15,
		"spec.limits[0].by":        16,
		"spec.rules[0].owner.path": 21,
	}
	if !reflect.DeepEqual(got, wantLines) {
		t.Errorf("lines %v, want %v", got, wantLines)
	}
	missing := policyfile.AddLines([]policyfile.Problem{{File: "testdata/nope.yaml", Object: "a/b", Field: "spec"}})
	if missing[0].Line != 0 {
		t.Errorf("a file that is gone gave line %d", missing[0].Line)
	}
}
