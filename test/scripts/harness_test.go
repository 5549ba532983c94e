package scripts_test

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/progtest"
)

// repoRoot is the repository, relative to this package.
const repoRoot = "../.."

// tollgateBin is cmd/tollgate built from this tree, once per test binary.
var tollgateBin = &progtest.Build{Package: progtest.TollgatePackage}

func TestMain(m *testing.M) {
	code := m.Run()
	tollgateBin.Remove()
	os.Exit(code)
}

// copyFiles copies repository files (paths relative to the root) into dir,
// keeping their paths and modes.
func copyFiles(t *testing.T, dir string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		src := filepath.Join(repoRoot, p)
		info, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		copyFile(t, src, filepath.Join(dir, p), info.Mode().Perm())
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
