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

// TestQuotaWorkedExample replays docs/quota.md's examples on the memory
// store: requests: 100, period: 15m allows 100 at once, then one every 9 s,
// 200 by the end of the first 15 minutes; with burst: 10, 10 at once and
// 110 by then.
func TestQuotaWorkedExample(t *testing.T) {
	tests := map[string]struct {
		burst int64 // 0: unset
		// at once is the burst; firstReset and lastReset the Reset of its
		// first and last request; total what the first 15 minutes allow;
		// idle how long a drained counter takes to be full again.
		atOnce                int
		firstReset, lastReset time.Duration
		total                 int
		idle                  time.Duration
	}{
		"requests: 100, period: 15m":            {atOnce: 100, firstReset: 9 * time.Second, lastReset: 15 * time.Minute, total: 200, idle: 15 * time.Minute},
		"requests: 100, period: 15m, burst: 10": {burst: 10, atOnce: 10, firstReset: 9 * time.Second, lastReset: 90 * time.Second, total: 110, idle: 90 * time.Second},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			clock := testclock.New(start)
			store := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now, SweepInterval: -1})
			defer store.Close()
			limit := []ratelimit.Limit{{Key: []byte("shop/tasks-api:per-user:u:alice"), Requests: 100, Burst: tc.burst, Period: 15 * time.Minute}}
			take := func() ratelimit.Status {
				t.Helper()
				res, err := store.Take(context.Background(), limit, nil)
				if err != nil {
					t.Fatal(err)
				}
				return res.Statuses[0]
			}

			first := take()
			if !first.Allowed || first.Limit != 100 || first.Remaining != int64(tc.atOnce-1) || first.Reset != tc.firstReset {
				t.Errorf("first request: %+v, want allowed, limit 100, remaining %d, reset %s", first, tc.atOnce-1, tc.firstReset)
			}
			allowed := 1
			var last ratelimit.Status
			for range tc.atOnce - 1 {
				if last = take(); last.Allowed {
					allowed++
				}
			}
			if allowed != tc.atOnce || last.Remaining != 0 || last.Reset != tc.lastReset {
				t.Fatalf("%d of the first %d requests allowed, the last %+v; want all, 0 remaining, reset %s", allowed, tc.atOnce, last, tc.lastReset)
			}
			if s := take(); s.Allowed || s.RetryAfter != 9*time.Second {
				t.Errorf("request %d at once: %+v, want denied, retry after 9s", tc.atOnce+1, s)
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
				if clock.Now().Sub(start.Add(15*time.Minute)) >= 0 {
					break
				}
			}
			if allowed != tc.total {
				t.Errorf("%d allowed in the first 15 minutes, want %d (%d at once + 100 refilled)", allowed, tc.total, tc.atOnce)
			}
			clock.Advance(tc.idle)
			if s := take(); !s.Allowed || s.Remaining != int64(tc.atOnce-1) {
				t.Errorf("after %s idle: %+v, want a full counter again", tc.idle, s)
			}
		})
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
