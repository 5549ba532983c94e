package packaging_test

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The image cannot be built here (no container engine runs on this
// machine), so its two halves are checked apart: the build stage's binary
// is built by the same script from the same files (the Docker build
// context, as .dockerignore leaves it), and the Dockerfile is checked to
// run that script and to ship the binary on a static, non-root base.

// imageBinary builds tollgate once per test binary as the Dockerfile's
// build stage does.
var imageBinary struct {
	once sync.Once
	path string
	err  error
}

// buildImageBinary copies the Docker build context (the repository minus
// .dockerignore's patterns) to a temporary directory and runs
// hack/build.sh there, with CGO_ENABLED=1 in the environment: the script
// must force the static build itself, whatever the caller's environment.
func buildImageBinary(t *testing.T) string {
	t.Helper()
	imageBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-image-")
		if err != nil {
			imageBinary.err = err
			return
		}
		// The directory outlives the test that built it (other tests
		// reuse the binary); the OS's temporary-file cleanup removes it.
		if err := copyContext(repoRoot, dir); err != nil {
			imageBinary.err = err
			return
		}
		out := filepath.Join(dir, "out", "tollgate")
		_, imageBinary.err = run(t, []string{"CGO_ENABLED=1", "GOOS=linux", "VERSION=v0.0.0-test", "COMMIT=test"},
			filepath.Join(dir, "hack", "build.sh"), out)
		imageBinary.path = out
	})
	if imageBinary.err != nil {
		t.Fatalf("build as the Dockerfile does: %v", imageBinary.err)
	}
	return imageBinary.path
}

// copyContext copies the files of src that .dockerignore does not exclude
// to dst.
func copyContext(src, dst string) error {
	ignore, err := readDockerignore(filepath.Join(src, ".dockerignore"))
	if err != nil {
		return err
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || rel == "." {
			return err
		}
		if ignored(ignore, filepath.ToSlash(rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// readDockerignore returns the patterns of a .dockerignore file.
func readDockerignore(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var patterns []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		patterns = append(patterns, strings.TrimPrefix(line, "/"))
	}
	return patterns, sc.Err()
}

// ignored reports whether the context path rel matches a pattern, the way
// Docker reads the patterns this repository uses: anchored at the root,
// with a leading "**/" matching in any directory. (Exceptions with "!" are
// not used here, and not supported.)
func ignored(patterns []string, rel string) bool {
	for _, p := range patterns {
		if rest, ok := strings.CutPrefix(p, "**/"); ok {
			if m, _ := filepath.Match(rest, filepath.Base(rel)); m {
				return true
			}
			continue
		}
		if m, _ := filepath.Match(p, rel); m {
			return true
		}
	}
	return false
}

func TestDockerignoreMatching(t *testing.T) {
	patterns := []string{".git", "bin", "**/testdata", "*.test"}
	for rel, want := range map[string]bool{
		".git":                      true,
		"bin":                       true,
		"pkg/jwt/testdata":          true,
		"testdata":                  true,
		"tollgate.test":             true,
		"pkg/jwt/jwt.test":          false, // Docker anchors *.test at the root
		"cmd/tollgate":              false,
		"pkg/ratelimit/take.lua":    false,
		"hack/build.sh":             false,
		"internal/deploy/deploy.go": false,
	} {
		if got := ignored(patterns, rel); got != want {
			t.Errorf("ignored(%q) = %v, want %v", rel, got, want)
		}
	}
}

// TestBinaryIsStatic builds tollgate from the image's build context with
// the image's script and checks that the result runs on distroless/static
// or scratch.
func TestBinaryIsStatic(t *testing.T) {
	bin := buildImageBinary(t)
	problems, err := dynamicLinking(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: it will not start on distroless/static; build with CGO_ENABLED=0", p)
	}
	out, err := run(t, nil, bin, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "tollgate v0.0.0-test (commit test,") {
		t.Errorf("tollgate version = %q: VERSION and COMMIT were not linked in", out)
	}
}

// TestDynamicLinkingIsSeen: the check TestBinaryIsStatic relies on finds
// a dynamically linked executable (the system's shell).
func TestDynamicLinkingIsSeen(t *testing.T) {
	sh, err := filepath.EvalSymlinks("/bin/sh")
	if err != nil {
		t.Skipf("no /bin/sh: %v", err)
	}
	problems, err := dynamicLinking(sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) == 0 {
		t.Errorf("%s looks static; the check is broken (or this system's shell is static)", sh)
	}
}

// dynamicLinking lists what makes the ELF executable at path depend on a
// dynamic loader: an interpreter (PT_INTERP), a dynamic section
// (PT_DYNAMIC), shared libraries (DT_NEEDED), a position-independent type.
func dynamicLinking(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var problems []string
	if f.Type != elf.ET_EXEC {
		problems = append(problems, fmt.Sprintf("ELF type %v, not a static executable (%v)", f.Type, elf.ET_EXEC))
	}
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			problems = append(problems, "an ELF interpreter (PT_INTERP)")
		case elf.PT_DYNAMIC:
			problems = append(problems, "a dynamic section (PT_DYNAMIC)")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(libs) > 0 {
		problems = append(problems, fmt.Sprintf("shared libraries (DT_NEEDED) %v", libs))
	}
	return problems, nil
}

// TestDockerfile checks what the image adds to the binary: the build
// stage runs hack/build.sh (the script TestBinaryIsStatic runs), and the
// final stage is a static base, runs the binary as a non-root user, and
// copies nothing else.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Stages, each a list of instructions (continuation lines joined).
	var stages [][]string
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(strings.ToUpper(line), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage Dockerfile, got %d stages", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	if !anyLine(build, func(l string) bool { return strings.HasPrefix(l, "RUN ") && strings.Contains(l, "hack/build.sh ") }) {
		t.Error("the build stage does not run hack/build.sh, the script whose output TestBinaryIsStatic checks")
	}
	base := strings.Fields(final[0])[len(strings.Fields(final[0]))-1]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s: want scratch or gcr.io/distroless/static*", base)
	}
	var user string
	var copies int
	for _, l := range final[1:] {
		switch f := strings.Fields(l); strings.ToUpper(f[0]) {
		case "USER":
			user = f[1]
		case "COPY", "ADD":
			copies++
			if !strings.Contains(l, "--from=build") {
				t.Errorf("final stage %q: only the built binary belongs in the image", l)
			}
		case "RUN":
			t.Errorf("final stage %q: a static base has no shell to run it", l)
		}
	}
	if copies != 1 {
		t.Errorf("final stage copies %d things, want the binary only", copies)
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("final stage USER %q: want a non-root user (65532, distroless's nonroot)", user)
	}
}

func anyLine(lines []string, f func(string) bool) bool {
	for _, l := range lines {
		if f(l) {
			return true
		}
	}
	return false
}
