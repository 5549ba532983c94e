package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tollgate-dev/tollgate/internal/exepages"
	"github.com/tollgate-dev/tollgate/internal/gctune"
	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
	"github.com/tollgate-dev/tollgate/pkg/server"
)

type serveFlags struct {
	grpcAddr, httpAddr, metricsAddr, healthAddr string
	pprofAddr                                   string
	policyDirs, policyFiles                     []string
	secretsDir                                  string
	tokenCacheSize                              int
	jwksAllowedHosts                            []string
	quotaStore                                  string
	memoryStoreMaxBytes                         byteSize
	redisAddr, redisPasswordFile                string
	redisClusterAddrs                           []string
	redisTLS                                    bool
	onStoreError                                string
	defaultAction                               string
	trustedHops                                 int
	normalizePaths                              bool
	forwardAuth                                 string
	crossNamespaceHosts                         bool
	maxInflightChecks, maxRequestBytes          int
	maxConnections                              int
	shutdownDelay, shutdownGrace                time.Duration
	kube                                        kubeFlags
	logLevel, logFormat                         string
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the authorization server (Envoy ext_authz gRPC, HTTP forward-auth, metrics, health)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.options(flagNames{cmd.Flags()})
			if err != nil {
				return err
			}
			gc := gctune.Apply(gctune.OSOptions())
			opts.Logger.Info("garbage collector", "settings", gc.String())
			opts.OnReady = func() { releaseStartupPages(opts.Logger) }
			srv, err := server.New(opts)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			// The first SIGTERM (main's context) starts the shutdown
			// delay; a second one ends it.
			sigs := make(chan os.Signal, 2)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sigs)
			done := make(chan struct{})
			defer close(done)
			go func() {
				for n := 0; ; {
					select {
					case <-sigs:
						if n++; n == 2 {
							srv.EndShutdownDelay()
						}
					case <-done:
						return
					}
				}
			}()
			if err := srv.Run(cmd.Context()); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.grpcAddr, "grpc-addr", ":50051", "Envoy ext_authz v3 gRPC address (with grpc.health.v1 and reflection)")
	fl.StringVar(&f.httpAddr, "http-addr", ":5001", "HTTP authorization endpoint address; empty disables")
	fl.StringVar(&f.metricsAddr, "metrics-addr", ":8080", "Prometheus /metrics address")
	fl.StringVar(&f.healthAddr, "health-addr", ":8081", "/healthz and /readyz address")
	fl.StringVar(&f.pprofAddr, "pprof-addr", "", "Go runtime profiles under /debug/pprof/ (e.g. 127.0.0.1:6060); empty disables")
	fl.StringSliceVar(&f.policyDirs, "policy-dir", nil, "directory of AuthPolicy YAML files, watched (repeatable)")
	fl.StringSliceVar(&f.policyFiles, "policy-file", nil, "AuthPolicy YAML file, watched (repeatable)")
	fl.StringVar(&f.secretsDir, "secrets-dir", "", "outside Kubernetes: secretRef{name,key} of namespace NS is the file DIR/NS/NAME/KEY")
	fl.IntVar(&f.tokenCacheSize, "token-cache-size", 100000, "verified-token cache entries; 0 disables")
	fl.StringSliceVar(&f.jwksAllowedHosts, "jwks-allowed-hosts", nil, "host globs key URLs may name (jwksURI, discovery, betterAuth, redirects), e.g. *.example.com; default any host. Link-local and cloud metadata addresses are always refused")
	fl.StringVar(&f.quotaStore, "quota-store", "memory", "quota store: memory or redis")
	f.memoryStoreMaxBytes = ratelimit.DefaultMaxBytes
	fl.Var(&f.memoryStoreMaxBytes, "memory-store-max-bytes", "heap bound of the in-memory quota counters (the memory store, and the fallback of the Redis store), e.g. 64Mi; when full, the most refilled counters are dropped")
	fl.StringVar(&f.redisAddr, "redis-addr", "", "Redis server host:port")
	fl.StringSliceVar(&f.redisClusterAddrs, "redis-cluster-addrs", nil, "Redis Cluster seed nodes host:port,...")
	fl.StringVar(&f.redisPasswordFile, "redis-password-file", "", "file holding the Redis password")
	fl.BoolVar(&f.redisTLS, "redis-tls", false, "connect to Redis with TLS")
	fl.StringVar(&f.onStoreError, "on-store-error", "local", "when Redis is unreachable: local, allow or deny")
	fl.StringVar(&f.defaultAction, "default-action", "deny", "requests that match no policy: deny (403) or allow")
	fl.BoolVar(&f.crossNamespaceHosts, "cross-namespace-hosts", false, "let policies of any namespace serve the same hosts (single-tenant clusters); by default a host belongs to the namespace of the oldest policy whose hosts cover it (the name, or a wildcard above it)")
	fl.IntVar(&f.trustedHops, "xff-trusted-hops", 0, "trusted proxies in front of Envoy whose X-Forwarded-For entry names the client IP")
	fl.BoolVar(&f.normalizePaths, "normalize-paths", false, normalizePathsUsage)
	fl.StringVar(&f.forwardAuth, "forward-auth", "forwarded", "which headers describe the original request on the HTTP endpoint: "+
		"forwarded (X-Forwarded-Method/-Host/-Uri; Traefik, Caddy), original (X-Original-URI/-Method, X-Original-Host or Host; nginx) "+
		"or request (the request line; Envoy HTTP ext_authz)")
	fl.IntVar(&f.maxInflightChecks, "max-inflight-checks", server.DefaultMaxInflightChecks,
		"checks decided at once, gRPC and HTTP together; past it a check is refused at once (gRPC RESOURCE_EXHAUSTED, HTTP 503) instead of queued")
	fl.IntVar(&f.maxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes,
		"largest gRPC CheckRequest in bytes; a larger one is refused (RESOURCE_EXHAUSTED) before it is read")
	fl.IntVar(&f.maxConnections, "max-connections", 0,
		"open connections of the gRPC and of the HTTP listener, each; 0: what RLIMIT_NOFILE leaves after a reserve for health, metrics and reloads, at most 1024")
	fl.DurationVar(&f.shutdownDelay, "shutdown-delay", 5*time.Second,
		"on SIGTERM, health (gRPC and /readyz) goes NOT_SERVING at once and checks keep being served this long, until Envoy and Kubernetes stop sending them; a second SIGTERM ends it")
	fl.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second, "time in-flight checks get to finish after the shutdown delay")
	f.kube.register(fl)
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "json", "json or text")
	return cmd
}

// releaseStartupPages unmaps the executable's pages that start-up touched
// (package inits: Kubernetes and protobuf type registration, whether or
// not --kubernetes is set) once the server is ready; serving maps back
// the few it runs (exepages). Under make loadtest it takes RSS from about
// 58 to 42 MB.
func releaseStartupPages(log *slog.Logger) {
	r, err := exepages.Release()
	switch {
	case err != nil:
		log.Warn("releasing the executable's start-up pages", "error", err)
	case r.Skipped != "":
		log.Debug("executable's start-up pages kept", "reason", r.Skipped)
	default:
		log.Debug("executable's start-up pages released", "bytes", r.Bytes)
	}
}

// options checks the flags and returns the server's options. Its errors
// are usage errors (exit status 2) that name each flag as n does.
func (f *serveFlags) options(n flagNames) (server.Options, error) {
	log, err := newLogger(n, f.logLevel, f.logFormat)
	if err != nil {
		return server.Options{}, err
	}
	// A missing path is a typo, not a policy set that may appear later: a
	// mounted ConfigMap directory exists from the start.
	if err := checkPolicyPaths(n, "policy-dir", f.policyDirs); err != nil {
		return server.Options{}, err
	}
	if err := checkPolicyPaths(n, "policy-file", f.policyFiles); err != nil {
		return server.Options{}, err
	}
	var defaultAllow bool
	switch f.defaultAction {
	case "deny":
	case "allow":
		defaultAllow = true
	default:
		return server.Options{}, n.errorf("default-action", f.defaultAction, "want deny or allow")
	}
	forwardAuth, err := httpauth.ParseMode(f.forwardAuth)
	if err != nil {
		return server.Options{}, usageError("%s: %w", n.of("forward-auth"), err)
	}
	for _, x := range []struct {
		flag     string
		val, min int
	}{
		{"max-inflight-checks", f.maxInflightChecks, 1},
		{"max-request-bytes", f.maxRequestBytes, 4 << 10},
		{"max-connections", f.maxConnections, 0},
		{"xff-trusted-hops", f.trustedHops, 0},
	} {
		if x.val < x.min {
			return server.Options{}, n.errorf(x.flag, x.val, "must be >= %d", x.min)
		}
	}
	for flag, d := range map[string]time.Duration{"shutdown-delay": f.shutdownDelay, "shutdown-grace": f.shutdownGrace} {
		if d < 0 {
			return server.Options{}, n.errorf(flag, d, "must not be negative")
		}
	}
	if f.tokenCacheSize < 0 {
		return server.Options{}, n.errorf("token-cache-size", f.tokenCacheSize, "must be >= 0")
	}
	for _, g := range f.jwksAllowedHosts {
		if err := jwt.CheckHostGlob(g); err != nil {
			return server.Options{}, usageError("%s: %w", n.of("jwks-allowed-hosts"), err)
		}
	}
	if _, err := ratelimit.ParseOnError(f.onStoreError); err != nil {
		return server.Options{}, usageError("%s: %w", n.of("on-store-error"), err)
	}
	switch f.quotaStore {
	case "memory":
	case "redis":
		if (f.redisAddr == "") == (len(f.redisClusterAddrs) == 0) {
			return server.Options{}, usageError("%s redis needs exactly one of %s and %s", n.of("quota-store"), n.of("redis-addr"), n.of("redis-cluster-addrs"))
		}
		if err := checkRedisAddrs(n, f.redisAddr, f.redisClusterAddrs); err != nil {
			return server.Options{}, err
		}
	default:
		return server.Options{}, n.errorf("quota-store", f.quotaStore, "want memory or redis")
	}
	kube, err := f.kube.options(n)
	if err != nil {
		return server.Options{}, err
	}
	return server.Options{
		GRPCAddr:            f.grpcAddr,
		HTTPAddr:            f.httpAddr,
		MetricsAddr:         f.metricsAddr,
		HealthAddr:          f.healthAddr,
		PprofAddr:           f.pprofAddr,
		PolicyPaths:         append(append([]string(nil), f.policyDirs...), f.policyFiles...),
		SecretsDir:          f.secretsDir,
		Kubernetes:          kube,
		TokenCacheSize:      f.tokenCacheSize,
		JWKSAllowedHosts:    f.jwksAllowedHosts,
		QuotaStore:          f.quotaStore,
		MemoryStoreMaxBytes: int64(f.memoryStoreMaxBytes),
		Redis: ratelimit.ClientOptions{
			Addr:         f.redisAddr,
			ClusterAddrs: f.redisClusterAddrs,
			PasswordFile: f.redisPasswordFile,
			TLS:          f.redisTLS,
		},
		OnStoreError:        f.onStoreError,
		DefaultAllow:        defaultAllow,
		CrossNamespaceHosts: f.crossNamespaceHosts,
		TrustedHops:         f.trustedHops,
		NormalizePaths:      f.normalizePaths,
		ForwardAuth:         forwardAuth,
		MaxInflightChecks:   f.maxInflightChecks,
		MaxRequestBytes:     f.maxRequestBytes,
		MaxConnections:      f.maxConnections,
		ShutdownDelay:       f.shutdownDelay,
		ShutdownGrace:       f.shutdownGrace,
		Logger:              log,
	}, nil
}

// checkRedisAddrs fails when --redis-addr or a --redis-cluster-addrs seed
// is not host:port, a typo that would otherwise only show as a store that
// never comes up.
func checkRedisAddrs(n flagNames, addr string, cluster []string) error {
	check := func(flag, a string) error {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return n.errorf(flag, a, "want host:port")
		}
		return nil
	}
	if addr != "" {
		if err := check("redis-addr", addr); err != nil {
			return err
		}
	}
	for _, a := range cluster {
		if err := check("redis-cluster-addrs", a); err != nil {
			return err
		}
	}
	return nil
}

// checkPolicyPaths fails when a path of the flag does not exist, naming
// the flag and the path.
func checkPolicyPaths(n flagNames, flag string, paths []string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
				err = pe.Err
			}
			return usageError("%s %s: %w", n.of(flag), p, err)
		}
	}
	return nil
}

// newLogger returns serve's logger (logging.New on stderr) and routes the
// logs of the libraries serve uses into it.
func newLogger(n flagNames, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, n.errorf("log-level", level, "want debug, info, warn or error")
	}
	log, err := logging.New(os.Stderr, l, format)
	if err != nil {
		return nil, n.errorf("log-format", format, "want json or text")
	}
	routeLibraryLogs(log)
	return log, nil
}
