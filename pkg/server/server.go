// Package server wires tollgate's parts into the running service: policy
// loading and hot reload, the decision engine, the quota store, the Envoy
// gRPC and HTTP forward-auth endpoints, metrics and health.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/health"

	"github.com/tollgate-dev/tollgate/internal/logging"
	"github.com/tollgate-dev/tollgate/pkg/controller"
	"github.com/tollgate-dev/tollgate/pkg/decision"
	"github.com/tollgate-dev/tollgate/pkg/httpauth"
	"github.com/tollgate-dev/tollgate/pkg/jwt"
	"github.com/tollgate-dev/tollgate/pkg/metrics"
	"github.com/tollgate-dev/tollgate/pkg/policyfile"
	"github.com/tollgate-dev/tollgate/pkg/policyset"
	"github.com/tollgate-dev/tollgate/pkg/ratelimit"
)

// Options configures a Server. Empty addresses disable their listener.
type Options struct {
	GRPCAddr    string
	HTTPAddr    string
	MetricsAddr string
	HealthAddr  string
	// PprofAddr serves net/http/pprof under /debug/pprof/ (profiling under
	// load); empty (the default) disables it.
	PprofAddr string

	// PolicyPaths are files and directories of AuthPolicy YAML, watched.
	PolicyPaths []string
	// ReloadInterval is how often every policy file is stat-checked in case
	// a change notification was missed (policyfile.WatchOptions); changes
	// normally apply on notification. Default 30s.
	ReloadInterval time.Duration
	// SecretsDir maps secretRef{name,key} of namespace NS to DIR/NS/NAME/KEY.
	SecretsDir string
	// Kubernetes, when set, runs the AuthPolicy controller in this process
	// (its Set, Secrets, Registerer, Logger and OnReady are the server's):
	// policies from the API server join those of PolicyPaths, and
	// secretRefs resolve from the cluster's Secrets (after SecretsDir).
	Kubernetes *controller.Options
	// TokenCacheSize bounds the verified-token cache; 0 disables it.
	TokenCacheSize int
	// JWKSAllowedHosts, when not empty, are the host globs key URLs may
	// name (jwt.Options.AllowedHosts).
	JWKSAllowedHosts []string

	// QuotaStore is "memory" or "redis".
	QuotaStore string
	// MemoryStoreMaxBytes bounds the counters of the memory store and of
	// the Redis store's per-replica fallback. Default
	// ratelimit.DefaultMaxBytes.
	MemoryStoreMaxBytes int64
	Redis               ratelimit.ClientOptions
	// OnStoreError is "local", "allow" or "deny".
	OnStoreError string
	// StoreBudget bounds the time one decision waits on Redis before it
	// follows OnStoreError. Default 75 ms, which keeps SPEC's 100 ms
	// bound; serve never changes it. Tests that prove exactness on a loaded
	// machine raise it (with Redis.Timeout), so that no check falls back
	// because the machine is slow.
	StoreBudget time.Duration

	// DefaultAllow allows requests that match no policy.
	DefaultAllow bool
	// CrossNamespaceHosts turns off host ownership by namespace.
	CrossNamespaceHosts bool
	// TrustedHops is the number of trusted X-Forwarded-For hops.
	TrustedHops int
	// NormalizePaths resolves dot and empty segments instead of denying
	// them (decision.Options.NormalizePaths).
	NormalizePaths bool
	// ForwardAuth says which headers describe the original request on the
	// HTTP endpoint (--forward-auth); the zero value is
	// httpauth.Forwarded.
	ForwardAuth httpauth.Mode

	// MaxInflightChecks bounds the checks in flight, gRPC and HTTP
	// together; past it a check is refused at once (gRPC
	// RESOURCE_EXHAUSTED, HTTP 503). Default DefaultMaxInflightChecks.
	MaxInflightChecks int
	// MaxRequestBytes bounds one gRPC message; a larger CheckRequest is
	// refused (RESOURCE_EXHAUSTED) from its length, before it is read.
	// Default DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxConnections bounds the open connections of the gRPC listener and
	// of the HTTP listener, each. Default: what RLIMIT_NOFILE leaves after
	// a reserve for health, metrics and reloads, at most 1024.
	MaxConnections int

	// ShutdownDelay is how long checks keep being served after the context
	// is cancelled, with health (gRPC and /readyz) already NOT_SERVING, so
	// that Envoy and Kubernetes stop sending checks before the listeners
	// close. Default 0.
	ShutdownDelay time.Duration
	// ShutdownGrace bounds how long in-flight checks may take to finish
	// after the delay. Default 10s.
	ShutdownGrace time.Duration

	Logger *slog.Logger
	// DenyLog bounds the deny lines logged per reason (a burst, then one
	// per interval; logging.LimiterOptions has the defaults), so that a
	// flood of denials is not a flood of log lines; and so the quota
	// store's lines per request (a failed refund), per message.
	DenyLog logging.LimiterOptions
	// DenyLogReport is how often the number of lines held back is logged,
	// per reason or message. Default 10s.
	DenyLogReport time.Duration
	// OnReady, when set, is called once, on a goroutine of its own, when
	// the server first becomes ready.
	OnReady func()
}

// A Server is a running tollgate.
type Server struct {
	opts Options
	log  *slog.Logger
	// denyLog and dryRunLog rate-limit the deny lines of enforcing and
	// dryRun decisions.
	denyLog, dryRunLog *logging.Limiter
	metrics            *metrics.Metrics
	jwt                *jwt.Manager
	engine             *decision.Engine
	// policies is the set every policy source feeds; it publishes into
	// engine.
	policies *policyset.Set
	quota    quotaStore
	ready    atomic.Bool
	health   *health.Server
	// storeLog rate-limits the quota store's lines per request.
	storeLog *logging.Limiter
	// kube is the AuthPolicy controller; nil without Options.Kubernetes.
	kube *controller.Controller
	// filesLoaded is set once the policy files were first read.
	filesLoaded atomic.Bool
	// admission bounds the checks in flight over every transport.
	admission *admission
	// draining is set when shutdown begins; endDelay, closed by
	// EndShutdownDelay, cuts the shutdown delay short.
	draining     atomic.Bool
	endDelay     chan struct{}
	endDelayOnce sync.Once

	grpcLis, httpLis, metricsLis, healthLis, pprofLis net.Listener
}

// quotaStore is the store the engine counts with, and what /readyz reports
// of it (ratelimit.Resilient's Up, Err and Ping).
type quotaStore interface {
	decision.QuotaStore
	Up() bool
	Err() error
	Ping(ctx context.Context) error
	Close() error
}

// New builds a Server and binds its listeners, so that an address in use
// fails here rather than after start.
func New(opts Options) (*Server, error) {
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.MaxInflightChecks <= 0 {
		opts.MaxInflightChecks = DefaultMaxInflightChecks
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = connectionBudget(bigListeners(opts))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DenyLogReport <= 0 {
		opts.DenyLogReport = 10 * time.Second
	}
	s := &Server{
		opts: opts, log: opts.Logger, metrics: metrics.New(), health: newHealth(),
		denyLog: logging.NewLimiter(opts.DenyLog), dryRunLog: logging.NewLimiter(opts.DenyLog), storeLog: logging.NewLimiter(opts.DenyLog),
		admission: newAdmission(int64(opts.MaxInflightChecks)),
		endDelay:  make(chan struct{}),
	}
	s.metrics.InFlight(func() float64 { return float64(s.admission.inflight.Load()) })

	store, err := newQuotaStore(opts, s.metrics, s.log, s.storeLog)
	if err != nil {
		return nil, err
	}
	s.quota = store

	cacheSize := opts.TokenCacheSize
	if cacheSize == 0 {
		cacheSize = -1 // jwt.Options: negative disables, 0 means default
	}
	jopts := jwt.Options{CacheSize: cacheSize, Logger: s.log, Observer: s.metrics, AllowedHosts: opts.JWKSAllowedHosts}
	var secrets secretChain
	if opts.SecretsDir != "" {
		secrets = append(secrets, jwt.NewDirSecrets(opts.SecretsDir, nil))
	}
	var kubeSecrets *controller.SecretCache
	if opts.Kubernetes != nil {
		kubeSecrets = controller.NewSecretCache()
		secrets = append(secrets, kubeSecrets)
	}
	switch len(secrets) {
	case 0:
		jopts.Secrets = noSecretSource{}
	case 1:
		jopts.Secrets = secrets[0]
	case 2:
		jopts.Secrets = secrets
	}
	s.jwt = jwt.NewManager(jopts)
	s.engine = decision.NewEngine(decision.Options{
		Quota: store, DefaultAllow: opts.DefaultAllow, TrustedHops: opts.TrustedHops, NormalizePaths: opts.NormalizePaths,
	})
	s.policies = policyset.New(policyset.Options{
		Keys:                s.jwt,
		Publish:             s.publish,
		OnStatus:            s.policyStatus,
		CrossNamespaceHosts: opts.CrossNamespaceHosts,
		Logger:              s.log,
	})
	if err := errors.Join(s.metrics.ObservePolicies(s.policies.Reasons), s.metrics.ObserveKeySets(s.jwt.KeySets)); err != nil {
		s.policies.Close()
		s.jwt.Close()
		store.Close()
		return nil, err
	}
	if opts.Kubernetes != nil {
		if err := s.newController(kubeSecrets); err != nil {
			s.policies.Close()
			s.jwt.Close()
			store.Close()
			return nil, err
		}
	}

	if err := s.listen(); err != nil {
		s.closeListeners()
		s.policies.Close()
		s.jwt.Close()
		store.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) listen() error {
	for _, l := range []struct {
		addr     string
		dst      *net.Listener
		name     string
		maxConns int
	}{
		{s.opts.GRPCAddr, &s.grpcLis, "grpc", s.opts.MaxConnections},
		{s.opts.HTTPAddr, &s.httpLis, "http", s.opts.MaxConnections},
		{s.opts.MetricsAddr, &s.metricsLis, "metrics", smallListenerConnections},
		{s.opts.HealthAddr, &s.healthLis, "health", smallListenerConnections},
		{s.opts.PprofAddr, &s.pprofLis, "pprof", smallListenerConnections},
	} {
		if l.addr == "" {
			continue
		}
		lis, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("%s listener: %w", l.name, err)
		}
		ll := newLimitListener(lis, l.maxConns, func(reason string) { s.metrics.ConnectionRefused(l.name, reason) })
		s.metrics.OpenConnections(l.name, func() float64 { return float64(ll.Open()) })
		*l.dst = ll
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, l := range []net.Listener{s.grpcLis, s.httpLis, s.metricsLis, s.healthLis, s.pprofLis} {
		if l != nil {
			l.Close()
		}
	}
}

// Addr returns the bound address of a listener ("grpc", "http", "metrics",
// "health", "pprof"), useful when the configured port was 0.
func (s *Server) Addr(name string) string {
	l := map[string]net.Listener{"grpc": s.grpcLis, "http": s.httpLis, "metrics": s.metricsLis, "health": s.healthLis, "pprof": s.pprofLis}[name]
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

// Engine returns the decision engine.
func (s *Server) Engine() *decision.Engine { return s.engine }

// Policies returns the policy set that every policy source feeds.
func (s *Server) Policies() *policyset.Set { return s.policies }

// Ready reports whether a policy set has been loaded.
func (s *Server) Ready() bool { return s.ready.Load() }

// Run serves until ctx is cancelled, then stops accepting, lets in-flight
// checks finish within the shutdown grace period, and returns.
func (s *Server) Run(ctx context.Context) error {
	defer s.jwt.Close()
	defer s.quota.Close()
	defer s.policies.Close()

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if s.policySource() == policySourceNone {
		s.log.Warn(noPolicySourceWarning)
	}
	var wg sync.WaitGroup
	if len(s.opts.PolicyPaths) > 0 {
		src := policyfile.NewSource(policyfile.SourceOptions{Set: s.policies, Paths: s.opts.PolicyPaths, Logger: s.log})
		wg.Add(1)
		go func() {
			defer wg.Done()
			src.Sync()
			if err := s.policies.Flush(watchCtx); err != nil {
				return
			}
			s.filesLoaded.Store(true)
			s.markReady()
			src.Watch(watchCtx, policyfile.WatchOptions{PollInterval: s.opts.ReloadInterval})
		}()
	} else {
		if err := s.policies.Flush(ctx); err != nil {
			return err
		}
		s.markReady()
	}

	wg.Add(1)
	go func() {
		defer wg.Done()
		pingEvery(watchCtx, s.quota, pingInterval)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.reportSuppressedEvery(watchCtx, s.opts.DenyLogReport)
	}()

	errc := make(chan error, 5)
	if s.kube != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.runController(watchCtx, errc)
		}()
	}
	stops := s.serve(errc)
	s.log.Info("tollgate serving", "grpc", s.Addr("grpc"), "http", s.Addr("http"), "metrics", s.Addr("metrics"), "health", s.Addr("health"),
		"maxInflightChecks", s.opts.MaxInflightChecks, "maxRequestBytes", s.opts.MaxRequestBytes, "maxConnections", s.opts.MaxConnections)

	var err error
	select {
	case <-ctx.Done():
		err = s.drain(errc)
	case err = <-errc:
	}
	if err != nil {
		s.log.Error("listener failed; shutting down", "error", err)
	}
	s.log.Info("shutting down", "grace", s.opts.ShutdownGrace)
	graceCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	defer cancel()
	var sw sync.WaitGroup
	for _, stop := range stops {
		sw.Add(1)
		go func() {
			defer sw.Done()
			stop(graceCtx)
		}()
	}
	sw.Wait()
	stopWatch()
	wg.Wait()
	return err
}

// Policy sources, as /readyz names them.
const (
	policySourceNone       = "none"
	policySourceFiles      = "files"
	policySourceKubernetes = "kubernetes"
	policySourceBoth       = "files+kubernetes"
)

// noPolicySourceWarning is logged at start and shown by /readyz when the
// server has nothing to load policies from.
const noPolicySourceWarning = "no policy source: every request gets the default action; " +
	"give --policy-dir, --policy-file or --kubernetes"

// policySource names where the server's policies come from.
func (s *Server) policySource() string {
	switch files := len(s.opts.PolicyPaths) > 0; {
	case files && s.opts.Kubernetes != nil:
		return policySourceBoth
	case files:
		return policySourceFiles
	case s.opts.Kubernetes != nil:
		return policySourceKubernetes
	}
	return policySourceNone
}

// noSecretSource is the secret resolver of a server with neither
// SecretsDir nor Kubernetes: a policy's secretRef is unavailable, and its
// status says what supplies secrets.
type noSecretSource struct{}

func (noSecretSource) Secret(_ context.Context, ref jwt.SecretRef) ([]byte, error) {
	return nil, fmt.Errorf("secretRef %s: no secret source: give --secrets-dir DIR, where the file DIR/%s/%s/%s holds the secret (or --kubernetes)",
		ref, ref.Namespace, ref.Name, ref.Key)
}

// drain begins the shutdown: health goes NOT_SERVING (gRPC and /readyz)
// at once, and checks keep being served for the shutdown delay, so that
// Envoy and Kubernetes stop sending new ones before the listeners close.
// The delay ends early on EndShutdownDelay or a listener's failure.
func (s *Server) drain(errc <-chan error) error {
	s.draining.Store(true)
	s.health.Shutdown()
	if s.opts.ShutdownDelay <= 0 {
		return nil
	}
	s.log.Info("draining: health is NOT_SERVING; serving on for the shutdown delay", "delay", s.opts.ShutdownDelay)
	t := time.NewTimer(s.opts.ShutdownDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.endDelay:
	case err := <-errc:
		return err
	}
	return nil
}

// EndShutdownDelay ends the shutdown delay now, or as soon as it begins
// (a second SIGTERM).
func (s *Server) EndShutdownDelay() {
	s.endDelayOnce.Do(func() { close(s.endDelay) })
}

// publish serves a new snapshot of the policy set. Metrics come first, so
// that checks decided by the new snapshot find the series of its policies.
func (s *Server) publish(snap *decision.Snapshot, changed []string) {
	s.metrics.Policies(snap, changed)
	s.engine.Swap(snap)
}

// markReady reports readiness once every policy source has its first
// snapshot served.
func (s *Server) markReady() {
	if len(s.opts.PolicyPaths) > 0 && !s.filesLoaded.Load() || s.kube != nil && !s.kube.Ready() {
		return
	}
	if !s.ready.Swap(true) {
		markServing(s.health)
		s.log.Info("policies loaded; ready", "policies", s.engine.Snapshot().Len())
		if s.opts.OnReady != nil {
			go s.opts.OnReady()
		}
	}
}

// policyStatus logs a policy's new status, and has the controller write
// it to the AuthPolicy object.
func (s *Server) policyStatus(namespace, name string, st policyset.Status) {
	if s.kube != nil {
		s.kube.StatusChanged(namespace, name)
	}
	if st.Ready() {
		s.log.Debug("policy accepted", "policy", namespace+"/"+name, "generation", st.ObservedGeneration)
		return
	}
	s.log.Error("policy not ready", "policy", namespace+"/"+name, "reason", st.Reason, "message", st.Message, "serving", st.Serving)
}

// serve starts every enabled endpoint and returns their stop functions.
func (s *Server) serve(errc chan<- error) []func(context.Context) {
	var stops []func(context.Context)
	if s.grpcLis != nil {
		stops = append(stops, s.serveGRPC(errc))
	}
	for _, h := range []struct {
		lis     net.Listener
		handler http.Handler
		// readTimeout bounds reading a request's body, which the
		// forward-auth endpoint never reads: after its answer, net/http
		// would otherwise wait on a trickled body forever.
		readTimeout time.Duration
	}{
		{s.httpLis, limitHTTP(s.admission, s.httpAuthHandler(), func() { s.metrics.CheckRefused("http") }), maxCheckDuration},
		{s.metricsLis, s.metricsHandler(), 0},
		{s.healthLis, s.healthHandler(), 0},
		{s.pprofLis, pprofHandler(), 0},
	} {
		if h.lis == nil {
			continue
		}
		srv := &http.Server{
			Handler:           h.handler,
			ReadHeaderTimeout: handshakeTimeout,
			ReadTimeout:       h.readTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ConnContext:       httpShare,
		}
		go func() {
			if err := srv.Serve(h.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		stops = append(stops, func(ctx context.Context) {
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		})
	}
	return stops
}
