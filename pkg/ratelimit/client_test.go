package ratelimit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestNewClient(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		opts        ClientOptions
		wantErr     bool
		wantCluster bool
	}{
		"an address gives a plain client":         {opts: ClientOptions{Addr: "127.0.0.1:6379", PasswordFile: pw, TLS: true}},
		"cluster addresses give a cluster client": {opts: ClientOptions{ClusterAddrs: []string{"a:1", "b:2"}, PasswordFile: pw, TLS: true}, wantCluster: true},
		"neither is an error":                     {wantErr: true},
		"both are an error":                       {opts: ClientOptions{Addr: "a:1", ClusterAddrs: []string{"b:2"}}, wantErr: true},
		"a missing password file is an error":     {opts: ClientOptions{Addr: "a:1", PasswordFile: filepath.Join(dir, "nope")}, wantErr: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := NewClient(tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NewClient: %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer c.Close()
			var password string
			var timeoutsHonoured, tls bool
			switch c := c.(type) {
			case *redis.Client:
				o := c.Options()
				password, timeoutsHonoured, tls = o.Password, o.ContextTimeoutEnabled, o.TLSConfig != nil
			case *redis.ClusterClient:
				o := c.Options()
				password, timeoutsHonoured, tls = o.Password, o.ContextTimeoutEnabled, o.TLSConfig != nil
			}
			_, isCluster := c.(*redis.ClusterClient)
			if isCluster != tt.wantCluster || password != "s3cret" || !timeoutsHonoured || !tls {
				t.Fatalf("cluster %v, password %q, context timeouts %v, tls %v; want cluster %v, the file's password without newline, context timeouts and tls",
					isCluster, password, timeoutsHonoured, tls, tt.wantCluster)
			}
		})
	}
}
