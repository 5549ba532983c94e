package policyfile_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/api/v1alpha1"
	"github.com/tollgate-dev/tollgate/internal/testlog"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
)

// anonPolicy is a policy ns/name on any host with prefix whose paths are
// all anonymous.
func anonPolicy(ns, name, prefix string) string {
	return fmt.Sprintf(`apiVersion: tollgate.dev/v1alpha1
kind: AuthPolicy
metadata:
  name: %s
  namespace: %s
spec:
  pathPrefix: %s
  rules:
    - name: all
      anonymous: true
`, name, ns, prefix)
}

// watched is a Source over dir, synced and watched, publishing into an
// engine.
type watched struct {
	t      *testing.T
	dir    string
	set    *policyset.Set
	engine *decision.Engine
	logs   *testlog.Buffer
}

func watch(t *testing.T, dir string, paths ...string) *watched {
	t.Helper()
	w := &watched{t: t, dir: dir, engine: decision.NewEngine(decision.Options{}), logs: &testlog.Buffer{}}
	keys := jwt.NewManager(jwt.Options{CacheSize: -1})
	t.Cleanup(keys.Close)
	w.set = policyset.New(policyset.Options{Keys: keys, Publish: func(s *decision.Snapshot, _ []string) { w.engine.Swap(s) }})
	t.Cleanup(w.set.Close)
	if len(paths) == 0 {
		paths = []string{dir}
	}
	src := policyfile.NewSource(policyfile.SourceOptions{Set: w.set, Paths: paths, Logger: slog.New(slog.NewJSONHandler(w.logs, nil))})
	src.Sync()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Notifications only: a poll would hide a missed notification.
		src.Watch(ctx, policyfile.WatchOptions{Stable: 50 * time.Millisecond, PollInterval: time.Hour})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// allowed reports whether an anonymous GET of path is allowed, and by
// which policy.
func (w *watched) allowed(path string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.set.Flush(ctx); err != nil {
		w.t.Fatal(err)
	}
	d := w.engine.Decide(ctx, &decision.Request{Method: "GET", Host: "x.test", Path: path, SourceIP: "192.0.2.1", Headers: map[string]string{}})
	return d.Allowed, d.Policy
}

func (w *watched) waitFor(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out waiting for %s; logs:\n%s", what, w.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *watched) waitServed(path, policy string) {
	w.t.Helper()
	w.waitFor(fmt.Sprintf("%s to be served by %q", path, policy), func() bool {
		ok, p := w.allowed(path)
		return p == policy && (ok || policy == "")
	})
}

// writeInPlace truncates and rewrites a file, as editors and kubectl cp do.
func writeInPlace(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWatchAppliesEachFileAlone(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", anonPolicy("shop", "a", "/a"))
	writeFile(t, dir, "b.yaml", anonPolicy("shop", "b", "/b"))
	w := watch(t, dir)
	w.waitServed("/a/1", "shop/a")
	w.waitServed("/b/1", "shop/b")

	// a.yaml gets a typo: a keeps its last good version...
	writeInPlace(t, filepath.Join(dir, "a.yaml"), strings.Replace(anonPolicy("shop", "a", "/a2"), "anonymous: true", "anonymus: true", 1))
	w.waitFor("the typo to be reported", func() bool {
		st, _ := w.set.StatusFrom("shop", "a", fileOrigin)
		return st.Reason == v1alpha1.ReasonInvalidSpec && strings.Contains(st.Message, "anonymus")
	})
	w.waitServed("/a/1", "shop/a")
	// ...and every other change still applies: an edit, an addition, and
	// the removal of a file that made /b public.
	writeInPlace(t, filepath.Join(dir, "b.yaml"), anonPolicy("shop", "b", "/b2"))
	w.waitServed("/b2/1", "shop/b")
	writeFile(t, dir, "sub/c.yaml", anonPolicy("shop", "c", "/c"))
	w.waitServed("/c/1", "shop/c")
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	w.waitServed("/b2/1", "")
	if _, ok := w.set.StatusFrom("shop", "b", fileOrigin); ok {
		t.Fatal("the policy of a removed file still has a status")
	}
	w.waitServed("/a/1", "shop/a")
}

func TestWatchKeepsPoliciesOfAFileThatTurnsEmptyOrUnparsable(t *testing.T) {
	tests := map[string]struct {
		content string
		logged  string
	}{
		"empty":                       {"", "no AuthPolicy document"},
		"only a comment":              {"# being rewritten\n", "no AuthPolicy document"},
		"cut inside a YAML structure": {anonPolicy("shop", "a", "/a")[:60] + "\n  rules: [\n", "invalid YAML"},
		"cut inside the spec":         {strings.SplitAfter(anonPolicy("shop", "a", "/a"), "  rules:\n")[0], "spec.rules"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFile(t, dir, "a.yaml", anonPolicy("shop", "a", "/a"))
			w := watch(t, dir)
			w.waitServed("/a/1", "shop/a")
			writeInPlace(t, path, tc.content)
			w.waitFor("the file to be read", func() bool {
				st, _ := w.set.StatusFrom("shop", "a", fileOrigin)
				return strings.Contains(w.logs.String(), tc.logged) || strings.Contains(st.Message, tc.logged)
			})
			w.waitServed("/a/1", "shop/a")
			// Only removing the file deletes the policy.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			w.waitServed("/a/1", "")
		})
	}
}

// A mounted ConfigMap: each file is a link through ..data, which
// Kubernetes swaps atomically to a new timestamped directory.
func TestWatchFollowsConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "..2026_01_01/p.yaml", anonPolicy("shop", "p", "/v1"))
	mustSymlink(t, "..2026_01_01", filepath.Join(dir, "..data"))
	mustSymlink(t, "..data/p.yaml", filepath.Join(dir, "p.yaml"))
	w := watch(t, dir)
	w.waitServed("/v1/x", "shop/p")

	writeFile(t, dir, "..2026_01_02/p.yaml", anonPolicy("shop", "p", "/v2"))
	mustSymlink(t, "..2026_01_02", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01")); err != nil {
		t.Fatal(err)
	}
	w.waitServed("/v2/x", "shop/p")
}

// A single --policy-file is watched through its directory, so an atomic
// save (write a temporary file, rename it over) is seen.
func TestWatchFollowsAFileRootReplacedByRename(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "p.yaml", anonPolicy("shop", "p", "/v1"))
	writeFile(t, dir, "other.yaml", anonPolicy("shop", "other", "/other"))
	w := watch(t, dir, path)
	w.waitServed("/v1/x", "shop/p")
	tmp := writeFile(t, dir, "p.yaml.tmp", anonPolicy("shop", "p", "/v2"))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	w.waitServed("/v2/x", "shop/p")
	if _, ok := w.set.StatusFrom("shop", "other", fileOrigin); ok {
		t.Fatal("a file beside the configured file was loaded")
	}
}

func TestWatchNextDefinitionTakesOverWhenTheFirstIsRemoved(t *testing.T) {
	dir := t.TempDir()
	first := writeFile(t, dir, "1.yaml", anonPolicy("shop", "p", "/first"))
	writeFile(t, dir, "2.yaml", anonPolicy("shop", "p", "/second"))
	w := watch(t, dir)
	w.waitServed("/first/x", "shop/p")
	if err := os.Remove(first); err != nil {
		t.Fatal(err)
	}
	w.waitServed("/second/x", "shop/p")
}

func TestSyncReadsOnlyFilesWhoseStatChanged(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "a.yaml", anonPolicy("shop", "a", "/aa"))
	keys := jwt.NewManager(jwt.Options{CacheSize: -1})
	t.Cleanup(keys.Close)
	set := policyset.New(policyset.Options{Keys: keys})
	t.Cleanup(set.Close)
	src := policyfile.NewSource(policyfile.SourceOptions{Set: set, Paths: []string{dir}})
	src.Sync()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Same size, same inode, same modification time: not read again.
	writeInPlace(t, path, anonPolicy("shop", "a", "/bb"))
	if err := os.Chtimes(path, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	src.Sync()
	if st, _ := set.StatusFrom("shop", "a", fileOrigin); !st.Ready() {
		t.Fatalf("status %+v", st)
	}
	if p := src.Problems(); len(p) > 0 {
		t.Fatalf("problems %v", p)
	}
	// A new modification time makes it read.
	if err := os.Chtimes(path, time.Now(), info.ModTime().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	writeInPlace(t, path, strings.Replace(anonPolicy("shop", "a", "/bb"), "anonymous: true", "anonymous: maybe", 1))
	src.Sync()
	if st, _ := set.StatusFrom("shop", "a", fileOrigin); st.Reason != v1alpha1.ReasonInvalidSpec {
		t.Fatalf("status after a real change %+v, want InvalidSpec", st)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// fileOrigin finds the status of a policy from files, whichever file.
var fileOrigin = policyset.Origin{File: "policies.yaml"}
