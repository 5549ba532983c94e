package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestServeFlagErrors(t *testing.T) {
	tests := map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"an unknown default action":                   {args: []string{"--default-action", "maybe"}, want: "--default-action"},
		"an environment variable sets a flag":         {env: map[string]string{"TOLLGATE_LOG_FORMAT": "xml"}, want: `TOLLGATE_LOG_FORMAT "xml": want json or text`},
		"a dashed flag maps to UPPER_SNAKE":           {env: map[string]string{"TOLLGATE_ON_STORE_ERROR": "retry"}, want: "TOLLGATE_ON_STORE_ERROR"},
		"a bad value in the environment":              {env: map[string]string{"TOLLGATE_TOKEN_CACHE_SIZE": "many"}, want: `TOLLGATE_TOKEN_CACHE_SIZE "many": not a valid int`},
		"redis without an address":                    {args: []string{"--quota-store", "redis"}, want: "--redis-addr"},
		"an unknown quota store":                      {args: []string{"--quota-store", "etcd"}, want: "--quota-store"},
		"a Redis address without a port":              {args: []string{"--quota-store", "redis", "--redis-addr", "redis.example"}, want: `--redis-addr "redis.example": want host:port`},
		"a Redis address with an empty port":          {env: map[string]string{"TOLLGATE_QUOTA_STORE": "redis", "TOLLGATE_REDIS_ADDR": "redis:"}, want: `TOLLGATE_REDIS_ADDR "redis:": want host:port`},
		"a Redis Cluster seed that is no host:port":   {args: []string{"--quota-store", "redis", "--redis-cluster-addrs", "a:7000,b"}, want: `--redis-cluster-addrs "b": want host:port`},
		"a kubeconfig that does not exist":            {args: []string{"--kubernetes", "--kubeconfig", "/nonexistent/kubeconfig"}, want: "--kubeconfig"},
		"a secret label selector that does not parse": {args: []string{"--kubernetes", "--kubeconfig", "/nonexistent/kubeconfig", "--secret-label-selector", "a in (b"}, want: "--secret-label-selector"},
		"a policy directory that does not exist":      {args: []string{"--policy-dir", "/nonexistent/policies"}, want: "tollgate: --policy-dir /nonexistent/policies: no such file or directory\n"},
		"a policy file from the environment":          {env: map[string]string{"TOLLGATE_POLICY_FILE": "/nonexistent/p.yaml"}, want: "tollgate: TOLLGATE_POLICY_FILE /nonexistent/p.yaml: no such file or directory\n"},
		"a negative token cache":                      {args: []string{"--token-cache-size", "-1"}, want: "--token-cache-size"},
		"a JWKS host glob that is not a host":         {args: []string{"--jwks-allowed-hosts", "auth.example.com:443"}, want: "--jwks-allowed-hosts"},
		"an unknown forward-auth mode":                {args: []string{"--forward-auth", "x-forwarded"}, want: "--forward-auth"},
		"a forward-auth mode from the environment":    {env: map[string]string{"TOLLGATE_FORWARD_AUTH": "nginx"}, want: "TOLLGATE_FORWARD_AUTH"},
		"a quota store from the environment":          {env: map[string]string{"TOLLGATE_QUOTA_STORE": "redis"}, want: "TOLLGATE_QUOTA_STORE redis needs exactly one of --redis-addr and --redis-cluster-addrs"},
		"two bad values, each on a line of its own":   {env: map[string]string{"TOLLGATE_KUBERNETES": "maybe", "TOLLGATE_SHUTDOWN_GRACE": "soon"}, want: "tollgate: TOLLGATE_KUBERNETES \"maybe\": not a valid bool: invalid syntax\ntollgate: TOLLGATE_SHUTDOWN_GRACE \"soon\""},
		"a memory store bound that is no size":        {args: []string{"--memory-store-max-bytes", "lots"}, want: "--memory-store-max-bytes"},
		"a memory store bound of zero":                {env: map[string]string{"TOLLGATE_MEMORY_STORE_MAX_BYTES": "0"}, want: "TOLLGATE_MEMORY_STORE_MAX_BYTES"},
		"no check may be in flight":                   {args: []string{"--max-inflight-checks", "0"}, want: "--max-inflight-checks"},
		"a receive limit too small for any check":     {env: map[string]string{"TOLLGATE_MAX_REQUEST_BYTES": "100"}, want: "TOLLGATE_MAX_REQUEST_BYTES"},
		"a negative connection limit":                 {args: []string{"--max-connections", "-1"}, want: "--max-connections"},
		"a negative count of trusted proxies":         {args: []string{"--xff-trusted-hops", "-1"}, want: `--xff-trusted-hops "-1": must be >= 0`},
		"trusted proxies from the environment":        {env: map[string]string{"TOLLGATE_XFF_TRUSTED_HOPS": "-2"}, want: `TOLLGATE_XFF_TRUSTED_HOPS "-2": must be >= 0`},
		"a negative shutdown delay":                   {env: map[string]string{"TOLLGATE_SHUTDOWN_DELAY": "-1s"}, want: "TOLLGATE_SHUTDOWN_DELAY"},
		"the command line wins over the env":          {env: map[string]string{"TOLLGATE_DEFAULT_ACTION": "allow"}, args: []string{"--default-action", "never"}, want: `"never"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			// A flag error ends serve before it serves; a server that
			// starts anyway is stopped, and the test fails on its exit code.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code, _, stderr := runCommandContext(t, ctx, append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--metrics-addr", "", "--health-addr", ""}, tc.args...)...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %s", code, stderr, tc.want)
			}
		})
	}
}

// TestKubernetesIsOnInACluster: --kubernetes defaults to true exactly when
// the process runs in a pod (the kubelet sets KUBERNETES_SERVICE_HOST).
func TestKubernetesIsOnInACluster(t *testing.T) {
	for host, want := range map[string]string{"": "false", "10.96.0.1": "true"} {
		t.Setenv("KUBERNETES_SERVICE_HOST", host)
		if got := newServeCommand().Flags().Lookup("kubernetes").DefValue; got != want {
			t.Errorf("KUBERNETES_SERVICE_HOST=%q: --kubernetes defaults to %s, want %s", host, got, want)
		}
	}
}
