package proxies_test

import (
	"os"
	"path/filepath"
	"testing"
)

// startCaddy runs the Caddy example with its tollgate and API addresses
// and its site address replaced, and returns the proxy's base URL.
func startCaddy(t *testing.T, bin, tollgateHTTP, upstreamAddr string) string {
	t.Helper()
	example := string(readExample(t, caddyExample))
	return startProxy(t, "caddy", func(dir, port string) launch {
		site := substitute(t, caddyExample, example, [][2]string{
			{"forward_auth tollgate.tollgate-system.svc.cluster.local:5001 {", "forward_auth " + tollgateHTTP + " {"},
			{"reverse_proxy tasks-api.shop.svc.cluster.local:8000", "reverse_proxy " + upstreamAddr},
			{"\n:80 {", "\n:" + port + " {\n\tbind 127.0.0.1"},
		})
		// Global options a test needs: no admin endpoint (it would be
		// shared by every Caddy on the machine).
		conf := "{\n\tadmin off\n}\n\n" + site
		file := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		return launch{
			bin:  bin,
			args: []string{"run", "--config", file, "--adapter", "caddyfile"},
			env:  childEnv("HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config")),
		}
	})
}
