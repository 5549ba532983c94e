package proxies_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// startNginx runs the nginx example with its tollgate and API addresses
// and its listen port replaced, and returns the proxy's base URL.
func startNginx(t *testing.T, bin, tollgateHTTP, upstreamAddr string) string {
	t.Helper()
	example := string(readExample(t, nginxExample))
	return startProxy(t, "nginx", func(dir, port string) launch {
		site := substitute(t, nginxExample, example, [][2]string{
			{"server tollgate.tollgate-system.svc.cluster.local:5001;", "server " + tollgateHTTP + ";"},
			{"server tasks-api.shop.svc.cluster.local:8000;", "server " + upstreamAddr + ";"},
			{"listen 80;", "listen 127.0.0.1:" + port + ";"},
		})
		if err := os.WriteFile(filepath.Join(dir, "tollgate.conf"), []byte(site), 0o644); err != nil {
			t.Fatal(err)
		}
		// The main configuration a distribution ships, reduced to what a
		// test needs: one process in the foreground, files in dir.
		main := strings.Join([]string{
			"daemon off;",
			"master_process off;",
			"pid " + filepath.Join(dir, "nginx.pid") + ";",
			"error_log " + filepath.Join(dir, "error.log") + " notice;",
			"events { worker_connections 256; }",
			"http {",
			"  access_log " + filepath.Join(dir, "access.log") + ";",
			"  client_body_temp_path " + filepath.Join(dir, "body") + ";",
			"  proxy_temp_path " + filepath.Join(dir, "proxy") + ";",
			"  fastcgi_temp_path " + filepath.Join(dir, "fastcgi") + ";",
			"  uwsgi_temp_path " + filepath.Join(dir, "uwsgi") + ";",
			"  scgi_temp_path " + filepath.Join(dir, "scgi") + ";",
			"  include " + filepath.Join(dir, "tollgate.conf") + ";",
			"}",
			"",
		}, "\n")
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
		errorLog := filepath.Join(dir, "error.log")
		return launch{bin: bin, args: []string{"-p", dir, "-c", conf, "-e", errorLog}, env: childEnv(), log: errorLog}
	})
}
