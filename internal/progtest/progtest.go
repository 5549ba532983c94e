// Package progtest provides the programs that tests run as processes: the
// go command, programs built from this tree (tollgate itself) once per
// test binary, and programs the machine must have installed.
package progtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// TollgatePackage is the import path of the tollgate command.
const TollgatePackage = "github.com/tollgate-dev/tollgate/cmd/tollgate"

// Go returns the go command: the one on PATH, else the one of the
// toolchain that built the test.
func Go() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// A Build is a program built from this tree, once, the first time a test
// asks for its Path, into a temporary directory of its own that Remove
// deletes. A test package keeps one per program in a package variable and
// calls Remove from TestMain after m.Run:
//
//	var tollgate = &progtest.Build{Package: progtest.TollgatePackage}
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		tollgate.Remove()
//		os.Exit(code)
//	}
//
// A Build must not be copied after first use.
type Build struct {
	// Package is what to build: an import path, or a directory relative
	// to the test's package.
	Package string
	// Flags are more flags for go build (such as -buildmode=pie).
	Flags []string
	// Env is added to the go command's environment (such as
	// CGO_ENABLED=0).
	Env []string

	once      sync.Once
	dir, path string
	err       error
}

// Path returns the path of the built program, building it first if no
// test has; a failed build fails the test, and every later one.
func (b *Build) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(b.build)
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

func (b *Build) build() {
	b.dir, b.err = os.MkdirTemp("", "progtest-")
	if b.err != nil {
		b.err = fmt.Errorf("progtest: build %s: %w", b.Package, b.err)
		return
	}
	path := filepath.Join(b.dir, filepath.Base(b.Package))
	args := append(append([]string{"build", "-o", path}, b.Flags...), b.Package)
	cmd := exec.Command(Go(), args...)
	cmd.Env = append(os.Environ(), b.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.err = fmt.Errorf("progtest: go %v: %w\n%s", args, err, out)
		return
	}
	b.path = path
}

// Remove deletes what Path built, if anything.
func (b *Build) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Need returns the path of an installed program that the test runs, name,
// which hack/test.sh installs with the Debian package pkg. When it is
// missing the test is skipped, or fails when the CI environment variable
// is set: CI never skips silently.
func Need(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	// Root's PATH has /usr/sbin; a user's may not.
	if _, serr := os.Stat("/usr/sbin/" + name); serr == nil {
		return "/usr/sbin/" + name
	}
	msg := fmt.Sprintf("%s not found (apt-get install -y %s, as hack/test.sh does): %v", name, pkg, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
