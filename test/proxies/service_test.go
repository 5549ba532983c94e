package proxies_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/deploy"
)

// repoRoot is the repository root, relative to this package.
const repoRoot = "../.."

// exampleDirs hold the proxy examples; every file in them is checked by
// TestExamplesNameOnlyTheChartService.
var exampleDirs = []string{"config/envoy", "config/istio", "config/nginx", "config/caddy"}

// The examples run by the forward-auth tests.
const (
	nginxExample = "config/nginx/tollgate.conf"
	caddyExample = "config/caddy/Caddyfile"
)

// examplePath returns the path of a file under the repository root.
func examplePath(rel string) string { return filepath.Join(repoRoot, filepath.FromSlash(rel)) }

// readExample returns a file under the repository root.
func readExample(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(examplePath(rel))
	if err != nil {
		t.Fatalf("read example: %v", err)
	}
	return b
}

// assertServicePort fails unless host:port is the chart's Service at the
// port named portName.
func assertServicePort(t *testing.T, what, host string, port uint32, portName string) {
	t.Helper()
	p, ok := deploy.PortNamed(portName)
	if !ok {
		t.Fatalf("%s: no Service port named %q", what, portName)
	}
	if host != deploy.ServiceHost || port != uint32(p.Port) {
		t.Errorf("%s: %s:%d, want the chart's Service %s:%d (port %s)", what, host, port, deploy.ServiceHost, p.Port, p.Name)
	}
}

var (
	// serviceHostRE finds in-cluster names of a tollgate Service, with the
	// port when one follows.
	serviceHostRE = regexp.MustCompile(`[a-z0-9.-]*tollgate[a-z0-9-]*\.[a-z0-9-]+\.svc(?:\.[a-z0-9.-]+)?(?::(\d+))?`)
	// serviceURLRE finds tollgate URLs and host:port pairs that name the
	// Service by a short name instead ("tollgate:5001", "tollgate.ns:5001").
	shortServiceRE = regexp.MustCompile(`(?:^|[\s/"'=])tollgate(?:\.[a-z0-9-]+)?:\d+`)
)

// TestExamplesNameOnlyTheChartService checks, in every file of every
// example directory, that each in-cluster name of tollgate is the Service
// the chart creates, at one of its ports. The structured tests (Envoy,
// Istio) also check host and port fields that are not written host:port.
func TestExamplesNameOnlyTheChartService(t *testing.T) {
	ports := map[string]bool{}
	for _, p := range deploy.Ports() {
		ports[strconv.Itoa(int(p.Port))] = true
	}
	seen := 0
	for _, dir := range exampleDirs {
		entries, err := os.ReadDir(examplePath(dir))
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			rel := dir + "/" + e.Name()
			text := readExample(t, rel)
			for _, m := range serviceHostRE.FindAllSubmatch(text, -1) {
				seen++
				host := string(m[0])
				if len(m[1]) > 0 {
					host = host[:len(host)-len(m[1])-1]
				}
				if host != deploy.ServiceHost {
					t.Errorf("%s names %q; the chart's Service is %s", rel, m[0], deploy.ServiceHost)
				}
				if len(m[1]) > 0 && !ports[string(m[1])] {
					t.Errorf("%s names port %s of the Service; it has %v", rel, m[1], deploy.Ports())
				}
			}
			if m := shortServiceRE.Find(text); m != nil {
				t.Errorf("%s names the Service as %q; use %s", rel, m, deploy.ServiceHost)
			}
		}
	}
	if seen == 0 {
		t.Fatal("no example names the tollgate Service: the scan is broken")
	}
}
