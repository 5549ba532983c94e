package policyfile_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/policyfile"
)

// TestKubectlOutputIsAPolicyFile reads what `kubectl get authpolicies -A
// -o yaml` (and -o json) wrote for two policies (testdata/list, taken from
// a real API server, status included): both are loaded, and the one the
// compiler rejects is reported on the line of its mistake.
func TestKubectlOutputIsAPolicyFile(t *testing.T) {
	for file, line := range map[string]int{
		"testdata/list/kubectl-get.yaml": 63,
		"testdata/list/kubectl-get.json": 86,
	} {
		t.Run(file, func(t *testing.T) {
			n, problems := load(t, file)
			problems = policyfile.AddLines(problems)
			if n != 2 {
				t.Errorf("%d policies read, want 2", n)
			}
			if len(problems) != 1 {
				t.Fatalf("problems:\n%s\nwant one, of shop/typo", lines(problems))
			}
			p := problems[0]
			if p.Object != "shop/typo" || p.Field != "spec.rules[0].path" || p.Line != line {
				t.Errorf("problem %q, want shop/typo's spec.rules[0].path on line %d", p, line)
			}
		})
	}
}

// listOf writes a v1 List of items, each the lines given, as kubectl
// does: "- " before an item's first line, two spaces before the others.
func listOf(items ...string) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nitems:\n")
	for _, it := range items {
		for i, l := range strings.Split(strings.TrimSuffix(it, "\n"), "\n") {
			if i == 0 {
				b.WriteString("- " + l + "\n")
			} else {
				b.WriteString("  " + l + "\n")
			}
		}
	}
	b.WriteString("kind: List\nmetadata:\n  resourceVersion: \"\"\n")
	return b.String()
}

// item is an AuthPolicy named name, its spec lines after line 6 of it.
func item(name, spec string) string {
	return strings.Replace(header, "name: api", "name: "+name, 1) + spec
}

func TestListItemsAreDocuments(t *testing.T) {
	const anon = "  rules: [{name: all, anonymous: true}]\n"
	tests := map[string]struct {
		stream string
		// objects are the documents read, in order, with the line of
		// their first mistake ("" none, "-" an error without a line).
		objects []string
	}{
		"a list of two": {
			stream:  listOf(item("a", anon), item("b", anon)),
			objects: []string{"shop/a", "shop/b"},
		},
		"a mistake in the second item is on its line of the file": {
			// Line 3 starts item a (7 lines); b starts on line 10, its
			// pathPrefix is its line 7: the file's line 16.
			stream:  listOf(item("a", anon), item("b", "  pathPrefix: 42\n"+anon)),
			objects: []string{"shop/a", "shop/b@16"},
		},
		"a mistake in a later field of an item": {
			stream:  listOf(item("a", anon+"  mode: sometimes\n  colour: red\n"), item("b", anon)),
			objects: []string{"shop/a@11", "shop/b"},
		},
		"an item whose dash is on a line of its own": {
			stream: "apiVersion: v1\nkind: List\nitems:\n-\n" +
				"  " + strings.ReplaceAll(strings.TrimSuffix(item("a", "  pathPrefix: 42\n"+anon), "\n"), "\n", "\n  ") + "\n-\n" +
				"  " + strings.ReplaceAll(strings.TrimSuffix(item("b", anon), "\n"), "\n", "\n  ") + "\n",
			objects: []string{"shop/a@11", "shop/b"},
		},
		"a list after a policy, in one stream": {
			stream:  validPolicy + "---\n" + listOf(item("a", anon)) + "---\n" + item("c", anon),
			objects: []string{"shop/health", "shop/a", "shop/c"},
		},
		"an AuthPolicyList": {
			stream: strings.Replace(strings.Replace(listOf(item("a", anon)), "apiVersion: v1\n", "apiVersion: tollgate.dev/v1alpha1\n", 1),
				"kind: List", "kind: AuthPolicyList", 1),
			objects: []string{"shop/a"},
		},
		"an empty list": {
			stream: "apiVersion: v1\nkind: List\nitems: []\n",
		},
		"a list without items": {
			stream: "apiVersion: v1\nkind: List\nitems: null\n",
		},
		"items that are no list": {
			stream:  "apiVersion: v1\nkind: List\nitems: nothing\n",
			objects: []string{"document 1@-"},
		},
		"a list written as JSON keeps the lines of its items": {
			stream: `{
  "apiVersion": "v1",
  "items": [
    {"apiVersion": "tollgate.dev/v1alpha1", "kind": "AuthPolicy",
     "metadata": {"name": "a", "namespace": "shop"},
     "spec": {"rules": [{"name": "all", "anonymous": true}]}},
    {"apiVersion": "tollgate.dev/v1alpha1", "kind": "AuthPolicy",
     "metadata": {"name": "b", "namespace": "shop"},
     "spec": {"pathPrefix": 42,
       "rules": [{"name": "all", "anonymous": true}]}}
  ],
  "kind": "List"
}
`,
			objects: []string{"shop/a", "shop/b@9"},
		},
		"a flow list in YAML, with comments": {
			stream: "apiVersion: v1\nkind: List\nitems: [\n" +
				"  {apiVersion: tollgate.dev/v1alpha1, kind: AuthPolicy, metadata: {name: a, namespace: shop},\n" +
				"   spec: {pathPrefix: 42, rules: [{name: all, anonymous: true}]}}  # a ] in a comment\n]\n",
			objects: []string{"shop/a@5"},
		},
		"an item whose text cannot be cut out is read, its mistakes on its first line": {
			// Columns count characters, offsets bytes: after the é's on
			// its line, b's text cannot be found by its column.
			stream: "apiVersion: v1\nkind: List\nitems: [" +
				`{apiVersion: tollgate.dev/v1alpha1, kind: AuthPolicy, metadata: {name: a, namespace: shop, labels: {x: "éééééééééé"}}, spec: {rules: [{name: all, anonymous: true}]}}, ` +
				"{apiVersion: tollgate.dev/v1alpha1, kind: AuthPolicy, metadata: {name: b, namespace: shop},\n" +
				"   spec: {pathPrefix: 42, rules: [{name: all, anonymous: true}]}}]\n",
			objects: []string{"shop/a", "shop/b@3"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			docs, err := policyfile.Parse([]byte(tc.stream))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, d := range docs {
				if d.Index != i {
					t.Errorf("document %d has index %d", i, d.Index)
				}
				s := d.Object()
				var de *policyfile.DecodeError
				switch {
				case errors.As(d.Err, &de):
					s += fmt.Sprintf("@%d", de.Errs[0].Line)
				case d.Err != nil:
					s += "@-"
				}
				got = append(got, s)
			}
			if strings.Join(got, " ") != strings.Join(tc.objects, " ") {
				t.Errorf("documents %q, want %q; stream:\n%s", got, tc.objects, tc.stream)
			}
		})
	}
}

// TestAListItemOfAnotherKindIsSkipped: `kubectl get all -o yaml` lists
// other kinds too; they are skipped with a warning, as documents are.
func TestAListItemOfAnotherKindIsSkipped(t *testing.T) {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
	path := writeFile(t, t.TempDir(), "all.yaml", listOf(cm, item("a", "  rules: [{name: all, anonymous: true}]\n")))
	n, problems := load(t, path)
	if n != 1 || len(problems) != 1 || !problems[0].Warning {
		t.Fatalf("%d policies, problems:\n%s\nwant 1 policy and a warning for the ConfigMap", n, lines(problems))
	}
}
