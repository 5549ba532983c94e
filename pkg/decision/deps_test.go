package decision_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/progtest"
)

// TestCoreImportsNoIO: the decision core and the packages it shares with
// the adapters (compiled policies, token identity and settings, quota
// limits) import no I/O: no Redis, Prometheus, JOSE library, network,
// HTTP, Kubernetes or gRPC package, and of tollgate only each other. fmt
// imports os for Printf (os.Stdout); that one is unavoidable and allowed.
func TestCoreImportsNoIO(t *testing.T) {
	goCmd := progtest.Go()
	const module = "github.com/tollgate-dev/tollgate/"
	core := map[string]bool{
		module + "pkg/decision": true,
		module + "pkg/policy":   true,
		module + "pkg/token":    true,
		module + "pkg/quota":    true,
		module + "pkg/pathnorm": true,
	}
	// Packages, and trees of packages, the core must not import.
	forbidden := []string{"net", "net/rpc", "net/smtp", "os/exec", "os/signal", "crypto/tls", "log/syslog", "plugin"}
	forbiddenTrees := []string{
		"net/http", "github.com/redis", "github.com/prometheus", "github.com/lestrrat-go", "github.com/envoyproxy",
		"google.golang.org/grpc", "google.golang.org/protobuf", "k8s.io", "sigs.k8s.io",
	}
	for pkg := range core {
		t.Run(strings.TrimPrefix(pkg, module), func(t *testing.T) {
			out, err := exec.Command(goCmd, "list", "-deps", pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", pkg, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				if strings.HasPrefix(dep, module) {
					if !core[dep] {
						t.Errorf("%s imports %s, which is not part of the pure core", pkg, dep)
					}
					continue
				}
				bad := slices.Contains(forbidden, dep)
				for _, tree := range forbiddenTrees {
					bad = bad || dep == tree || strings.HasPrefix(dep, tree+"/")
				}
				if bad {
					t.Errorf("%s imports %s", pkg, dep)
				}
			}
		})
	}
}
