package policyfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policy/compiler"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

const validPolicy = `apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: health
  namespace: shop
spec:
  rules:
    - name: health
      path: /health
      anonymous: true
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// load syncs a new Source over paths into a new set, as validate does,
// and returns the number of policies read and the problems.
func load(t *testing.T, paths ...string) (int, []policyfile.Problem) {
	t.Helper()
	keys := jwt.NewManager(jwt.Options{CacheSize: -1})
	t.Cleanup(keys.Close)
	set := policyset.New(policyset.Options{Keys: keys})
	t.Cleanup(set.Close)
	src := policyfile.NewSource(policyfile.SourceOptions{Set: set, Paths: paths})
	problems := src.Sync()
	return len(src.Keys()), problems
}

func TestLoadReportsEveryMistake(t *testing.T) {
	_, problems := load(t, "testdata/invalid/many-mistakes.yaml")
	want := map[string]string{
		"spec.rules[0].owner.path": "userid",
		"spec.limits[0].requests":  "requests must be between 1",
		"spec.limits[0].period":    "forever",
		"spec.limits[0].by":        "planet",
		"spec.jwt":                 "exactly one key source",
	}
	for _, p := range problems {
		if p.File != "testdata/invalid/many-mistakes.yaml" || p.Object != "shop/broken" {
			t.Errorf("problem %q does not name the file and object", p)
		}
		if sub, ok := want[p.Field]; ok && strings.Contains(p.Message, sub) {
			delete(want, p.Field)
		}
	}
	if len(want) > 0 {
		t.Errorf("not reported: %v; got %v", want, problems)
	}
	if len(problems) != 5 {
		t.Errorf("got %d problems, want 5: %v", len(problems), problems)
	}
}

func TestLoadSamples(t *testing.T) {
	n, problems := load(t, "../../config/samples")
	if len(problems) > 0 {
		t.Fatalf("samples have problems: %v", problems)
	}
	if n == 0 {
		t.Fatal("no sample policy loaded")
	}
}

func TestLoadBadInput(t *testing.T) {
	huge := "# " + strings.Repeat("x", policyfile.MaxFileSize) + "\n" + validPolicy
	tests := map[string]struct {
		content string
		message string
	}{
		"malformed YAML":         {"apiVersion: [unclosed\n", "invalid YAML"},
		"tab-indented YAML":      {"apiVersion: tollgate.dev/v1alpha1\nkind: AuthPolicy\nmetadata:\n\tname: x\n", "invalid YAML"},
		"a wrong kind of ours":   {"apiVersion: tollgate.dev/v1alpha1\nkind: AuthPolicies\nmetadata:\n  name: x\n", "unsupported object"},
		"no kind":                {"apiVersion: v1\nmetadata:\n  name: x\n", "unsupported object"},
		"a wrong version":        {strings.Replace(validPolicy, "v1alpha1", "v1", 1), "unsupported object"},
		"a scalar document":      {"just a string\n", "not an object"},
		"a list document":        {"- a\n- b\n", "not an object"},
		"an unknown field":       {strings.Replace(validPolicy, "      anonymous: true", "      anonymous: true\n      anonymus: true", 1), `spec.rules[0].anonymus: unknown field "anonymus" (did you mean "anonymous"?)`},
		"a duplicate field":      {strings.Replace(validPolicy, "  name: health\n", "  name: health\n  name: other\n", 1), `p.yaml:5: shop/other: metadata.name: duplicate field "name" (first on line 4)`},
		"a wrong type":           {strings.Replace(validPolicy, "anonymous: true", "anonymous: [yes]", 1), "p.yaml:10: shop/health: spec.rules[0].anonymous: must be true or false, not a list"},
		"a missing name":         {strings.Replace(validPolicy, "  name: health\n", "", 1), "metadata.name"},
		"a file over 5 MiB":      {huge, "larger than 5 MiB"},
		"an empty file":          {"", "no AuthPolicy"},
		"only comments":          {"# nothing\n---\n# here\n", "no AuthPolicy"},
		"invalid UTF-8 and NULs": {"apiVersion: \xff\x00\xfe\n", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "p.yaml", tc.content)
			n, problems := load(t, path)
			if len(problems) == 0 && n > 0 {
				t.Fatalf("loaded %d policies, want a problem", n)
			}
			if len(problems) == 0 {
				if tc.message != "no AuthPolicy" {
					t.Fatal("no problem reported")
				}
				return
			}
			all := ""
			for _, p := range problems {
				all += p.String() + "\n"
				if p.File != path {
					t.Errorf("problem %q does not name the file", p)
				}
			}
			if !strings.Contains(all, tc.message) {
				t.Errorf("problems %q do not mention %q", all, tc.message)
			}
		})
	}
}

func TestReadFileRefusesHugeFileWithoutReadingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse 1 GiB
		t.Fatal(err)
	}
	f.Close()
	if _, err := policyfile.ReadFile(path); !errors.Is(err, policyfile.ErrTooLarge) {
		t.Fatalf("ReadFile = %v, want ErrTooLarge", err)
	}
}

func TestParseMultiDocument(t *testing.T) {
	stream := "---\n# leading comment\n" + validPolicy + "---\n---\n" + strings.Replace(validPolicy, "name: health\n  namespace", "name: health2\n  namespace", 1)
	docs, err := policyfile.Parse([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Object() != "shop/health" || docs[1].Object() != "shop/health2" {
		t.Fatalf("docs = %+v", docs)
	}
	for _, d := range docs {
		if d.Err != nil {
			t.Errorf("%s: %v", d.Object(), d.Err)
		}
	}
}

func TestFilesWalksDirectories(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "b.yaml", validPolicy)
	writeFile(t, dir, "a/c.yml", validPolicy)
	writeFile(t, dir, "kustomization.yaml", "resources: []\n")
	writeFile(t, dir, "README.md", "not a policy")
	writeFile(t, dir, "..2026_11_28/d.yaml", validPolicy)
	writeFile(t, dir, ".hidden.yaml", validPolicy)
	if err := os.Symlink(filepath.Join(dir, "b.yaml"), filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	files, err := policyfile.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a/c.yml"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "link.yaml")}
	if strings.Join(files, ",") != strings.Join(want, ",") {
		t.Fatalf("Files = %v, want %v", files, want)
	}
	if _, err := policyfile.Files(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("Files of a missing path succeeded")
	}
}

func TestLoadDuplicatesAndConflicts(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "1.yaml", validPolicy)
	writeFile(t, dir, "2.yaml", validPolicy)
	writeFile(t, dir, "3.yaml", strings.Replace(validPolicy, "name: health\n  namespace", "name: twin\n  namespace", 1))
	n, problems := load(t, dir)
	if len(problems) != 2 {
		t.Fatalf("problems = %v, want a duplicate and a conflict", problems)
	}
	if !strings.Contains(problems[0].String(), "2.yaml: shop/health: metadata.name: policy shop/health is also defined in") ||
		!strings.Contains(problems[1].String(), "3.yaml: shop/twin: spec: Conflict: policy shop/health already governs any host") {
		t.Errorf("problems = %v", problems)
	}
	if n != 2 {
		t.Errorf("policies = %d, want 2", n)
	}
}

func TestOtherKindsAreSkippedWithAWarning(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "all.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\n"+validPolicy+
		"---\napiVersion: kuadrant.io/v1\nkind: AuthPolicy\nmetadata:\n  name: y\n")
	n, problems := load(t, dir)
	if n != 1 || len(problems) != 2 {
		t.Fatalf("policies %d, problems %v; want 1 policy and 2 warnings", n, problems)
	}
	for _, p := range problems {
		if !p.Warning || !strings.Contains(p.String(), "warning: not a tollgate AuthPolicy; skipped") {
			t.Errorf("problem %q is not a skip warning", p)
		}
	}
}

// FuzzParse checks that no input makes reading or compiling a policy panic,
// and that every decoded policy either compiles or reports field errors.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validPolicy))
	if b, err := os.ReadFile("testdata/invalid/many-mistakes.yaml"); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("../../config/samples/tollgate_v1alpha1_authpolicy.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("{\"apiVersion\":\"tollgate.dev/v1alpha1\",\"kind\":\"AuthPolicy\",\"metadata\":{\"name\":\"x\"},\"spec\":{\"rules\":[{\"name\":\"r\",\"path\":\"/a/{x}/**\"}]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, _ := policyfile.Parse(data)
		for _, d := range docs {
			if d.Err != nil || d.Policy == nil {
				continue
			}
			p, err := compiler.Compile(d.Policy)
			if err != nil {
				if len(compiler.FieldErrors(err)) == 0 {
					t.Fatalf("compile error without field errors: %v", err)
				}
				continue
			}
			for _, r := range p.Rules {
				if r.Path != nil {
					r.Path.Match("/a/b/c", nil)
				}
			}
		}
	})
}
