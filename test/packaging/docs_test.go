package packaging_test

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testclock"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// readDoc returns a file under docs/.
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestQuotaWorkedExample replays docs/quota.md's example on the memory
// store: requests: 100, period: 15m allows 100 at once, then one every 9 s,
// 200 by the end of the first 15 minutes.
func TestQuotaWorkedExample(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	store := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now, SweepInterval: -1})
	defer store.Close()
	limit := []ratelimit.Limit{{Key: "shop/tasks-api:per-user:u:alice", Requests: 100, Period: 15 * time.Minute}}
	take := func() ratelimit.Status {
		t.Helper()
		res, err := store.Take(context.Background(), limit)
		if err != nil {
			t.Fatal(err)
		}
		return res.Statuses[0]
	}

	first := take()
	if !first.Allowed || first.Limit != 100 || first.Remaining != 99 || first.Reset != 9*time.Second {
		t.Errorf("first request: %+v, want allowed, limit 100, remaining 99, reset 9s", first)
	}
	allowed := 1
	for range 99 {
		if take().Allowed {
			allowed++
		}
	}
	if allowed != 100 {
		t.Fatalf("%d of the first 100 requests allowed, want all", allowed)
	}
	if s := take(); s.Allowed || s.RetryAfter != 9*time.Second {
		t.Errorf("101st request at once: %+v, want denied, retry after 9s", s)
	}
	clock.Advance(4500 * time.Millisecond)
	if s := take(); s.Allowed || s.RetryAfter != 4500*time.Millisecond {
		t.Errorf("at 4.5 s: %+v, want denied, retry after 4.5s", s)
	}
	// One request every second until 15:00: one in nine is allowed.
	for clock.Advance(500 * time.Millisecond); ; clock.Advance(time.Second) {
		if take().Allowed {
			allowed++
		}
		if clock.Now().Sub(time.Date(2026, 1, 1, 12, 15, 0, 0, time.UTC)) >= 0 {
			break
		}
	}
	if allowed != 200 {
		t.Errorf("%d allowed in the first 15 minutes, want 200 (100 at once + 100 refilled)", allowed)
	}
	clock.Advance(15 * time.Minute)
	if s := take(); !s.Allowed || s.Remaining != 99 {
		t.Errorf("after 15 idle minutes: %+v, want a full counter again", s)
	}
}

// metricRE finds tollgate metric names (histograms by their base name).
var metricRE = regexp.MustCompile(`\btollgate_[a-z0-9_]+[a-z0-9]\b`)

// TestMetricsDocumented: docs/metrics.md lists every metric that the code
// under pkg/ defines (the Name of its Opts), and no other.
func TestMetricsDocumented(t *testing.T) {
	defined := map[string]bool{}
	nameRE := regexp.MustCompile(`Name:\s*"(tollgate_[a-z0-9_]+)"`)
	err := filepath.WalkDir(filepath.Join(repoRoot, "pkg"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range nameRE.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(defined) < 10 {
		t.Fatalf("found %d metric definitions under pkg/: the scan is broken", len(defined))
	}
	doc := readDoc(t, "metrics.md")
	documented := map[string]bool{}
	for _, m := range metricRE.FindAllString(doc, -1) {
		documented[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")] = true
	}
	for name := range defined {
		if !documented[name] {
			t.Errorf("%s is not in docs/metrics.md", name)
		}
	}
	for name := range documented {
		if !defined[name] {
			t.Errorf("docs/metrics.md names %s, which no code under pkg/ defines", name)
		}
	}
}

// TestReasonsDocumented: docs/troubleshooting.md explains every deny reason
// (decisions, tokens, forwarded headers) and every status reason.
func TestReasonsDocumented(t *testing.T) {
	doc := readDoc(t, "troubleshooting.md")
	var reasons []string
	for _, r := range jwt.Reasons() {
		reasons = append(reasons, string(r))
	}
	reasons = append(reasons, stringConsts(t, "pkg/decision/decision.go", "Reason")...)
	reasons = append(reasons, stringConsts(t, "pkg/httpauth/httpauth.go", "Reason")...)
	reasons = append(reasons, stringConsts(t, "api/v1alpha1/authpolicy_types.go", "Reason")...)
	if len(reasons) < 30 {
		t.Fatalf("found %d reasons: the scan is broken", len(reasons))
	}
	for _, r := range reasons {
		if !strings.Contains(doc, "`"+r+"`") {
			t.Errorf("reason %s is not explained in docs/troubleshooting.md", r)
		}
	}
}

// stringConsts returns the values of the string constants of a Go file
// whose names start with prefix.
func stringConsts(t *testing.T, file, prefix string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					values = append(values, v)
				}
			}
		}
	}
	if len(values) == 0 {
		t.Fatalf("%s has no %s* string constants", file, prefix)
	}
	return values
}

// TestDocsLinks: every relative link of the README and docs/ names a file
// or directory of the repository.
func TestDocsLinks(t *testing.T) {
	linkRE := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join(repoRoot, "README.md"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRE.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s: %v", filepath.Base(f), target, err)
			}
		}
	}
}
