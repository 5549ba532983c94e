// Package redistest starts real redis-server processes for tests: a single
// server on a free loopback port, and a Redis Cluster made with
// redis-cli --cluster create. Processes are stopped by t.Cleanup.
//
// When redis-server or redis-cli is missing the test is skipped, or fails
// when the CI environment variable is set, so that CI never silently skips
// the Redis tests.
package redistest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server or cluster may take to come up.
const startTimeout = 20 * time.Second

// Server is one redis-server child process.
type Server struct {
	// Addr is host:port of the server; it stays the same across Restart.
	Addr string

	t    testing.TB
	bin  string
	args []string
	dir  string
	pass string // requirepass, for the PING that waits for the start

	// TLS, for a server started by StartServerTLS, is a client
	// configuration that trusts the server's certificate.
	TLS *tls.Config

	mu  sync.Mutex // guards cmd and out
	cmd *exec.Cmd
	out *bytes.Buffer
}

// lookPath returns the path of a Redis binary or ends the test.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (apt-get install -y redis-server redis-tools): %v", name, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback port that is free, and whose cluster bus port
// (port+10000) is free too.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(30000)
		if portFree(port) && portFree(port+10000) {
			return port
		}
	}
	t.Fatal("no free loopback port found")
	return 0
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// StartServer starts a redis-server without persistence on a free loopback
// port and waits until it answers PING.
func StartServer(t testing.TB) *Server {
	t.Helper()
	return startServer(t, nil, "")
}

// StartServerWithPassword starts a server as StartServer does, whose
// default user needs the password (requirepass).
func StartServerWithPassword(t testing.TB, password string) *Server {
	t.Helper()
	return startServer(t, func(string, int) []string { return []string{"--requirepass", password} }, password)
}

// StartServerTLS starts a server as StartServer does that speaks only TLS,
// with a certificate for 127.0.0.1 that Server.TLS trusts.
func StartServerTLS(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	clientTLS := writeCert(t, certFile, keyFile)
	tlsArgs := func(_ string, port int) []string {
		return []string{
			"--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", certFile, "--tls-key-file", keyFile,
			"--tls-ca-cert-file", certFile, "--tls-auth-clients", "no",
		}
	}
	return startServerWith(t, tlsArgs, "", clientTLS)
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key, and
// returns a client configuration that trusts it.
func writeCert(t testing.TB, certFile, keyFile string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

func startServer(t testing.TB, extra func(dir string, port int) []string, password string) *Server {
	t.Helper()
	return startServerWith(t, extra, password, nil)
}

func startServerWith(t testing.TB, extra func(dir string, port int) []string, password string, clientTLS *tls.Config) *Server {
	t.Helper()
	bin := lookPath(t, "redis-server")
	dir := t.TempDir()
	var lastErr error
	// A port found free may be taken before redis-server binds it: retry.
	for range 5 {
		port := freePort(t)
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			t:    t,
			bin:  bin,
			dir:  dir,
			pass: password,
			TLS:  clientTLS,
			args: []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir,
				"--protected-mode", "no", "--daemonize", "no",
			},
		}
		if extra != nil {
			s.args = append(s.args, extra(dir, port)...)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin, s.args...)
	out := &bytes.Buffer{}
	cmd.Stdout = &lockedWriter{w: out, mu: &s.mu}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.mu.Lock()
	s.cmd, s.out = cmd, out
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.pass, TLSConfig: s.TLS, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	for {
		select {
		case err := <-exited:
			s.mu.Lock()
			defer s.mu.Unlock()
			s.cmd = nil
			return fmt.Errorf("redis-server on %s exited: %v\n%s", s.Addr, err, out.String())
		default:
		}
		if err := c.Ping(ctx).Err(); err == nil {
			go func() { <-exited }() // reap the process when it is killed
			return nil
		} else if ctx.Err() != nil {
			_ = cmd.Process.Kill()
			return fmt.Errorf("redis-server on %s: no PING answer within %s: %w", s.Addr, startTimeout, err)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// Stop kills the server, as a crash would, and waits until its port is
// closed. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(startTimeout)
	for !portFreeToDial(s.Addr) {
		if time.Now().After(deadline) {
			s.t.Errorf("redis-server on %s still accepts connections after kill", s.Addr)
			return
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func portFreeToDial(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

// Pause stops the server process (SIGSTOP) without closing its port: the
// kernel still accepts connections but nothing answers, as with a hung or
// partitioned Redis. Resume undoes it; Stop also works on a paused server.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("signal %v: redis-server on %s is not running", sig, s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v to redis-server on %s: %v", sig, s.Addr, err)
	}
}

// Restart starts a stopped server again on the same port, with an empty
// dataset.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		// The old socket may linger for a moment: retry until the deadline.
		if time.Now().After(deadline) {
			s.t.Fatalf("restart redis-server: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// Output returns what the server logged.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// lockedWriter lets the process write its log while tests read it.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// Cluster is a Redis Cluster of masters without replicas.
type Cluster struct {
	// Addrs are the host:port of every master.
	Addrs   []string
	Servers []*Server
}

// StartCluster starts masters cluster-enabled redis-servers, joins them with
// redis-cli --cluster create and waits until every node reports
// cluster_state:ok. Redis Cluster needs at least 3 masters.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("StartCluster: %d masters, Redis Cluster needs at least 3", masters)
	}
	cli := lookPath(t, "redis-cli")
	c := &Cluster{}
	for range masters {
		s := startServer(t, func(dir string, port int) []string {
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)),
				"--cluster-node-timeout", "5000",
			}
		}, "")
		c.Servers = append(c.Servers, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, addr := range c.Addrs {
		if err := waitClusterOK(ctx, addr, masters); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// waitClusterOK polls CLUSTER INFO on one node until the cluster is usable
// from its point of view.
func waitClusterOK(ctx context.Context, addr string, masters int) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	var last string
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil {
			last = info
			if strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", masters)) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster node %s not ok: %w (%v)\n%s", addr, ctx.Err(), err, last)
		case <-time.After(10 * time.Millisecond): // polling interval
		}
	}
}
